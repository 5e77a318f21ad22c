"""Email over SMTP (aiosmtplib): STARTTLS before anything is said, a login when given."""

from __future__ import annotations

import re
import ssl
from email.message import EmailMessage

import aiosmtplib

from heal.notify.channels import ChannelError
from heal.notify.webhooks import Message


class EmailChannel:
    kind = "email"

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._sender = sender
        self._to = list(to)
        self._starttls = starttls
        self._username = username
        self._password = password
        self._timeout = timeout
        self._tls_context = tls_context

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = ", ".join(self._to)
        mail["Subject"] = f"[heal] {message.title}"
        # The same id on every retry: a mail system or a reader can tell a repeat.
        local = re.sub(r"[^A-Za-z0-9.-]", "-", str(message.delivery_id))
        mail["Message-ID"] = f"<heal-notification-{local}@heal>"
        mail["X-Heal-Event"] = message.event
        mail.set_content(message.text)
        return mail

    async def send(self, message: Message, *, now: float) -> None:
        try:
            await aiosmtplib.send(
                self.compose(message),
                hostname=self._host,
                port=self._port,
                # Required, not opportunistic: a server that cannot upgrade is refused,
                # so a password never crosses the wire in the clear.
                start_tls=self._starttls,
                username=self._username,
                password=self._password,
                timeout=self._timeout,
                tls_context=self._tls_context,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ChannelError(
                f"email {self.name}: login refused ({exc.code})", permanent=True
            ) from None
        except aiosmtplib.SMTPRecipientsRefused:
            raise ChannelError(f"email {self.name}: recipients refused", permanent=True) from None
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx is the server's final word; 4xx is "try again later".
            raise ChannelError(
                f"email {self.name}: SMTP {exc.code}", permanent=500 <= exc.code < 600
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"email {self.name}: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        return None
