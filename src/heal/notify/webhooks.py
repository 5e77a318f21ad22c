"""Channels that take one message per event over an incoming webhook: a generic signed
webhook, Discord and Microsoft Teams. No database: the dispatcher owns retries.

A refusal raises :class:`~heal.notify.channels.ChannelError`: ``permanent`` when sending
the same message again cannot succeed (a 4xx other than 408/429), ``retry_after`` when the
receiver said how long to wait.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from heal.notify.channels import ChannelError

SIGNATURE_HEADER = "X-Heal-Signature"
TIMESTAMP_HEADER = "X-Heal-Timestamp"
EVENT_HEADER = "X-Heal-Event"
DELIVERY_HEADER = "X-Heal-Delivery"

_TIMEOUT = httpx.Timeout(10.0)
_DISCORD_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Message:
    """One notification for one channel."""

    # The same on every retry, for receivers' dedup: the outbox row's id, or the
    # idempotency key of a notify action's step.
    delivery_id: int | str
    event: str
    title: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)


class EventChannel(Protocol):
    name: str

    async def send(self, message: Message, *, now: float) -> None:
        """Deliver ``message``; ``now`` is the Unix time a signature carries."""
        ...

    async def aclose(self) -> None: ...


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``timestamp + "." + body``."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _retry_after(response: httpx.Response) -> float | None:
    header = response.headers.get("Retry-After", "")
    try:
        return float(header) if header else None
    except ValueError:
        return None  # an HTTP date: the dispatcher's own backoff applies


def _refused(who: str, response: httpx.Response, retry_after: float | None = None) -> ChannelError:
    status = response.status_code
    if status == 429:
        return ChannelError(
            f"{who}: rate limited (429)", retry_after=retry_after or _retry_after(response)
        )
    permanent = 400 <= status < 500 and status != 408
    return ChannelError(f"{who}: HTTP {status}", permanent=permanent)


class _Poster:
    name: str
    kind: str

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self._url = url
        self._client = httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False)

    async def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        try:
            return await self._client.post(
                self._url, content=body, headers={"Content-Type": "application/json", **headers}
            )
        except httpx.HTTPError as exc:
            # The URL may hold a token: say only what kind of failure it was.
            raise ChannelError(f"{self.kind} {self.name}: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


class WebhookChannel(_Poster):
    """POSTs the event's JSON; signed when a secret is given (see docs/closed-loop.md)."""

    kind = "webhook"

    def __init__(self, name: str, url: str, secret: str | None = None) -> None:
        super().__init__(name, url)
        self._secret = secret

    def body(self, message: Message) -> bytes:
        document = {
            "id": message.delivery_id,
            "event": message.event,
            "title": message.title,
            "text": message.text,
            **message.payload,
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    async def send(self, message: Message, *, now: float) -> None:
        body = self.body(message)
        timestamp = str(int(now))
        headers = {
            EVENT_HEADER: message.event,
            DELIVERY_HEADER: str(message.delivery_id),
            TIMESTAMP_HEADER: timestamp,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, timestamp, body)
        response = await self._post(body, headers)
        if not response.is_success:
            raise _refused(f"webhook {self.name}", response)


class DiscordChannel(_Poster):
    """A Discord incoming webhook: 204 when posted; 429 says ``retry_after`` in its JSON."""

    kind = "discord"

    async def send(self, message: Message, *, now: float) -> None:
        content = f"**{message.title}**\n{message.text}"[:_DISCORD_LIMIT]
        body = json.dumps({"content": content, "allowed_mentions": {"parse": []}}).encode()
        response = await self._post(body, {})
        if response.is_success:
            return
        wait = None
        if response.status_code == 429:
            try:
                wait = float(response.json().get("retry_after"))
            except (ValueError, TypeError, AttributeError):
                wait = None
        raise _refused(f"discord {self.name}", response, wait)


class TeamsChannel(_Poster):
    """A Microsoft Teams incoming webhook: answers 200 with the body ``1`` when posted."""

    kind = "teams"

    async def send(self, message: Message, *, now: float) -> None:
        card = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": message.title,
            "title": message.title,
            "text": message.text,
        }
        response = await self._post(json.dumps(card).encode(), {})
        if response.is_success and response.text.strip() == "1":
            return
        if response.is_success:
            # Teams has answered 200 with an error text; throttling is the one worth a retry.
            said = response.text[:200]
            raise ChannelError(f"teams {self.name}: {said}", permanent="429" not in said)
        raise _refused(f"teams {self.name}", response)
