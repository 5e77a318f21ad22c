"""The email channel against a real SMTP server (aiosmtpd) that requires STARTTLS and AUTH."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as Mail
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from heal.notify.channels import ChannelError
from heal.notify.email import EmailChannel
from heal.notify.webhooks import Message

USER, PASSWORD = "heal", "smtp-pass-w0rd"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Mailbox:
    mails: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        self.logins.append(auth_data.login.decode())
        # handled=False: the server answers 535 itself (True would mean "already said").
        return AuthResult(success=ok, handled=ok)


@dataclass
class Smtp:
    port: int
    mailbox: Mailbox
    client_tls: ssl.SSLContext


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[Smtp]:
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=server_tls,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield Smtp(controller.port, mailbox, ssl.create_default_context(cafile=str(cert)))
    finally:
        controller.stop()


def _channel(smtp: Smtp, **overrides: Any) -> EmailChannel:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": smtp.port,
        "sender": "heal@example.org",
        "to": ["oncall@example.org", "lead@example.org"],
        "username": USER,
        "password": PASSWORD,
        "timeout": 5.0,
        "tls_context": smtp.client_tls,
        **overrides,
    }
    return EmailChannel("oncall-mail", **settings)


MESSAGE = Message(
    41, "action_failed", "Action failed: #3 CheckoutDown", "local action 'restart' failed"
)


async def test_a_message_arrives_over_starttls_with_login(smtp: Smtp) -> None:
    await _channel(smtp).send(MESSAGE, now=0)
    (mail,) = smtp.mailbox.mails
    assert mail["Subject"] == "[heal] Action failed: #3 CheckoutDown"
    assert mail["From"] == "heal@example.org"
    assert mail["To"] == "oncall@example.org, lead@example.org"
    assert mail["Message-ID"] == "<heal-notification-41@heal>"
    assert mail["X-Heal-Event"] == "action_failed"
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert body.decode().strip() == "local action 'restart' failed"
    assert smtp.mailbox.logins == [USER]


async def test_a_wrong_password_is_a_permanent_error_that_never_shows_it(smtp: Smtp) -> None:
    with pytest.raises(ChannelError) as refused:
        await _channel(smtp, password="wrong-password").send(MESSAGE, now=0)
    assert refused.value.permanent
    assert "login refused" in str(refused.value)
    assert "wrong-password" not in str(refused.value)
    assert smtp.mailbox.mails == []


async def test_without_starttls_the_server_refuses_and_nothing_is_sent(smtp: Smtp) -> None:
    with pytest.raises(ChannelError) as refused:
        await _channel(smtp, starttls=False).send(MESSAGE, now=0)
    assert smtp.mailbox.mails == []
    assert smtp.mailbox.logins == []  # the password never crossed in the clear
    assert "email oncall-mail" in str(refused.value)


async def test_a_server_that_is_down_is_worth_a_retry(smtp: Smtp) -> None:
    with pytest.raises(ChannelError) as refused:
        await _channel(smtp, port=_free_port()).send(MESSAGE, now=0)
    assert not refused.value.permanent
