"""Slack Web API: Block Kit cards with buttons, thread replies, card updates."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx

from heal.notify.cards import (
    BUTTONS,
    SCORES,
    Card,
    RatingPrompt,
    Verb,
    rating_action_id,
    rating_data,
)
from heal.notify.channels import ChannelError, Posted

DEFAULT_API_URL = "https://slack.com/api"
# Block Kit limits: a section field's or context element's text, and a message's text.
FIELD_LIMIT = 2000
TEXT_LIMIT = 40000
SIGNATURE_WINDOW_SECONDS = 300
# Errors a retry will not cure.
_PERMANENT = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_blocks",
    "message_not_found",
    "thread_not_found",
    "cant_update_message",
}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, sent: str | None, body: bytes, now: float) -> bool:
    """True for a genuine request signed within the last five minutes (or the next)."""
    # Headers arrive as latin-1 text: anything but ASCII digits (str.isdigit() also takes
    # "²") or an ASCII signature (compare_digest raises on other text) is simply wrong.
    if not timestamp or not sent or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
        return False
    expected = signature(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, sent.encode("utf-8", "replace"))


def card_blocks(card: Card, *, outcome: str | None = None) -> list[dict[str, Any]]:
    """The card in Block Kit: buttons while it is open, the outcome once it is decided."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": card.title[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{name}*\n{_escape(value)}", FIELD_LIMIT)}
                for name, value in card.facts()
            ],
        },
    ]
    if outcome is None:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"heal-approval-{card.approval_id}",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": label},
                        "action_id": verb.value,
                        "value": str(card.approval_id),
                        **(_STYLES.get(verb) or {}),
                    }
                    for verb, label in BUTTONS
                ],
            }
        )
    else:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _cut(_escape(outcome), FIELD_LIMIT)}],
            }
        )
    return blocks


def rating_blocks(prompt: RatingPrompt) -> list[dict[str, Any]]:
    """The prompt in Block Kit: the question, buttons 1-5, and who rated what so far."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(_escape(prompt.question), FIELD_LIMIT)},
        },
        {
            "type": "actions",
            "block_id": f"heal-rating-{prompt.incident_id}",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": str(score)},
                    "action_id": rating_action_id(score),
                    "value": rating_data(prompt.incident_id, score),
                }
                for score in SCORES
            ],
        },
    ]
    if prompt.rated:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _cut(_escape(prompt.rated), FIELD_LIMIT)}],
            }
        )
    return blocks


_STYLES: dict[Verb, dict[str, str]] = {
    Verb.APPROVE: {"style": "primary"},
    Verb.REJECT: {"style": "danger"},
}


def _escape(text: str) -> str:
    """Alert text shown as text: no ``<!channel>`` pings, no links, no user mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """Slack refuses a whole message (invalid_blocks) for one over-long text."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SlackChannel:
    provider = "slack"

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
    ) -> None:
        self.channel = channel
        self._base = api_url.rstrip("/") + "/"
        self._client = httpx.AsyncClient(
            timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(self._base + method, json=payload)
        except httpx.HTTPError as exc:
            raise ChannelError(f"slack {method}: {type(exc).__name__}") from None
        if response.status_code == 429:
            retry_after = response.headers.get("Retry-After", "")
            raise ChannelError(
                f"slack {method}: rate limited",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        try:
            body = response.json()
        except ValueError:
            raise ChannelError(f"slack {method}: HTTP {response.status_code}, not JSON") from None
        if isinstance(body, dict) and body.get("ok") is True:
            return body
        error = str(body.get("error") if isinstance(body, dict) else "") or "unknown_error"
        raise ChannelError(f"slack {method}: {error}", permanent=error in _PERMANENT)

    async def post_card(self, card: Card, *, under: Posted | None = None) -> Posted:
        return await self._post(card.text(), under, card_blocks(card))

    async def post_text(self, text: str, *, under: Posted | None = None) -> Posted:
        return await self._post(text, under, None)

    async def close_card(self, posted: Posted, card: Card, outcome: str) -> None:
        await self.call(
            "chat.update",
            {
                "channel": posted.chat_id,
                "ts": posted.message_id,
                "text": _cut(_escape(f"{card.text()}\n{outcome}"), TEXT_LIMIT),
                "blocks": card_blocks(card, outcome=outcome),
            },
        )

    async def post_rating(self, prompt: RatingPrompt, *, under: Posted | None = None) -> Posted:
        return await self._post(prompt.text(), under, rating_blocks(prompt))

    async def update_rating(self, posted: Posted, prompt: RatingPrompt) -> None:
        await self.call(
            "chat.update",
            {
                "channel": posted.chat_id,
                "ts": posted.message_id,
                "text": _cut(_escape(prompt.text()), TEXT_LIMIT),
                "blocks": rating_blocks(prompt),
            },
        )

    async def tell(self, channel: str, user: str, text: str) -> None:
        """A message only ``user`` sees (answers to their button)."""
        await self.call("chat.postEphemeral", {"channel": channel, "user": user, "text": text})

    async def _post(
        self, text: str, under: Posted | None, blocks: list[dict[str, Any]] | None
    ) -> Posted:
        payload: dict[str, Any] = {
            "channel": under.chat_id if under else self.channel,
            "text": _cut(_escape(text), TEXT_LIMIT),
        }
        if under is not None:
            payload["thread_ts"] = under.root
        if blocks is not None:
            payload["blocks"] = blocks
        body = await self.call("chat.postMessage", payload)
        channel, ts = body.get("channel"), body.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            raise ChannelError("slack chat.postMessage: answer without channel/ts")
        return Posted(channel, ts, under.root if under else None)

    async def aclose(self) -> None:
        await self._client.aclose()
