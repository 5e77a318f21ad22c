"""Chat webhooks: Telegram callback queries and Slack interactions (button presses).

These endpoints carry no bearer token: Telegram proves itself with the secret token
given to ``setWebhook``, Slack with its v0 request signature. A press that cannot be
used (not heal's button, an unlinked user, a closed approval) still gets 200 and a
polite answer, so the chat service does not redeliver it.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, HTTPException, Request, Response, status

from heal.api.schemas import Problem
from heal.app import Heal
from heal.approvals.chat import answer_button
from heal.notify import slack
from heal.notify.cards import Verb, parse_button_data, parse_rating_data
from heal.notify.channels import ChannelError, Posted
from heal.notify.slack import SlackChannel
from heal.notify.telegram import TelegramChannel
from heal.observability.logging import get_logger
from heal.verify.chat_ratings import RatingAnswer, answer_rating

# A press heal cannot read is refused with a sentence, not a list of fields.
_UNREADABLE: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "not a callback heal can read"}
}
router = APIRouter(prefix="/api/v1/chat", tags=["chat"], responses=_UNREADABLE)
log = get_logger("heal.chat")
C = TypeVar("C", TelegramChannel, SlackChannel)


def _heal(request: Request) -> Heal:
    heal: Heal = request.app.state.heal
    return heal


def _channel(heal: Heal, kind: type[C]) -> C:
    for channel in heal.chat.channels:
        if isinstance(channel, kind):
            return channel
    raise HTTPException(status.HTTP_404_NOT_FOUND, "this chat is not configured")


def _field(body: dict[str, Any], name: str, key: str) -> Any:
    """``body[name][key]``, or None when either is missing or not an object."""
    inner = body.get(name)
    return inner.get(key) if isinstance(inner, dict) else None


async def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "body is not a JSON object")
    return body


@router.post("/telegram", responses={401: {"description": "wrong or missing secret token"}})
async def telegram_update(
    request: Request,
    secret: str | None = Header(default=None, alias="X-Telegram-Bot-Api-Secret-Token"),
) -> dict[str, bool]:
    heal = _heal(request)
    channel = _channel(heal, TelegramChannel)
    expected = heal.settings.telegram_webhook_secret
    if (
        expected is None
        or secret is None
        or not hmac.compare_digest(secret.encode(), expected.get_secret_value().encode())
    ):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong or missing secret token")
    update = await _json_object(await request.body())
    query = update.get("callback_query")
    if not isinstance(query, dict):
        return {"ok": True}  # messages, joins, …: not for heal
    query_id, user, data = query.get("id"), query.get("from"), query.get("data")
    if not isinstance(query_id, str) or not isinstance(user, dict) or "id" not in user:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "callback_query lacks id/from")
    rating = parse_rating_data(data) if isinstance(data, str) else None
    if rating is not None:
        await _telegram_rating(heal, channel, query_id, str(user["id"]), rating, query)
        return {"ok": True}
    button = parse_button_data(data) if isinstance(data, str) else None
    if button is None:
        answer = "This button is not heal's."
    else:
        approval_id, verb = button
        answer = await answer_button(
            heal.db,
            heal.approvals,
            provider="telegram",
            external_user=str(user["id"]),
            approval_id=approval_id,
            verb=verb,
        )
    try:
        await channel.answer_callback(query_id, answer, alert=button is not None)
    except ChannelError as exc:  # the decision stands; only the pop-up is lost
        log.warning("telegram answer failed", error=str(exc))
    return {"ok": True}


@router.post(
    "/slack/interactions", responses={401: {"description": "bad or stale Slack signature"}}
)
async def slack_interaction(
    request: Request,
    timestamp: str | None = Header(default=None, alias="X-Slack-Request-Timestamp"),
    signature: str | None = Header(default=None, alias="X-Slack-Signature"),
) -> Response:
    heal = _heal(request)
    channel = _channel(heal, SlackChannel)
    secret = heal.settings.slack_signing_secret
    raw = await request.body()
    if secret is None or not slack.verify(
        secret.get_secret_value(), timestamp, signature, raw, time.time()
    ):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or stale Slack signature")
    payload_field = parse_qs(raw.decode("utf-8", "replace")).get("payload")
    if not payload_field:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no payload field")
    payload = await _json_object(payload_field[0].encode())
    if payload.get("type") != "block_actions":
        return Response(status_code=status.HTTP_200_OK)
    user = _field(payload, "user", "id")
    where = _field(payload, "channel", "id") or channel.channel
    actions = payload.get("actions")
    if (
        not isinstance(user, str)
        or not isinstance(where, str)
        or not isinstance(actions, list)
        or not actions
        or not isinstance(actions[0], dict)
    ):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "block_actions lacks user/actions"
        )
    pressed = actions[0]
    rating = parse_rating_data(str(pressed.get("value")))
    if rating is not None:
        await _slack_rating(heal, channel, where, user, rating, payload)
        return Response(status_code=status.HTTP_200_OK)
    try:
        verb = Verb(str(pressed.get("action_id")))
        approval_id = int(str(pressed.get("value")))
    except ValueError:
        answer = "This button is not heal's."
    else:
        answer = await answer_button(
            heal.db,
            heal.approvals,
            provider="slack",
            external_user=user,
            approval_id=approval_id,
            verb=verb,
        )
    try:
        await channel.tell(where, user, answer)
    except ChannelError as exc:
        log.warning("slack answer failed", error=str(exc))
    return Response(status_code=status.HTTP_200_OK)


async def _rate(heal: Heal, provider: str, user: str, rating: tuple[int, int]) -> RatingAnswer:
    incident_id, score = rating
    return await answer_rating(
        heal.db,
        provider=provider,
        external_user=user,
        incident_id=incident_id,
        score=score,
        now=heal.verification.clock(),
        redact=heal.engine.redact,
    )


async def _telegram_rating(
    heal: Heal,
    channel: TelegramChannel,
    query_id: str,
    user: str,
    rating: tuple[int, int],
    query: dict[str, Any],
) -> None:
    answer = await _rate(heal, "telegram", user, rating)
    try:
        # A pop-up to dismiss for a refusal or a repeat; a passing toast for a rating.
        await channel.answer_callback(query_id, answer.text, alert=answer.prompt is None)
    except ChannelError as exc:  # the rating stands; only the pop-up is lost
        log.warning("telegram answer failed", error=str(exc))
    message = query.get("message")
    chat_id = _field(query, "message", "chat")
    message_id = message.get("message_id") if isinstance(message, dict) else None
    if answer.prompt is None or not isinstance(chat_id, dict) or not isinstance(message_id, int):
        return  # nothing new to show, or Telegram did not say which message it was
    posted = Posted(str(chat_id.get("id")), str(message_id))
    await _show_rating(channel, posted, answer)


async def _slack_rating(
    heal: Heal,
    channel: SlackChannel,
    where: str,
    user: str,
    rating: tuple[int, int],
    payload: dict[str, Any],
) -> None:
    answer = await _rate(heal, "slack", user, rating)
    try:
        await channel.tell(where, user, answer.text)
    except ChannelError as exc:
        log.warning("slack answer failed", error=str(exc))
    ts = _field(payload, "container", "message_ts") or _field(payload, "message", "ts")
    if answer.prompt is None or not isinstance(ts, str):
        return
    await _show_rating(channel, Posted(where, ts), answer)


async def _show_rating(
    channel: TelegramChannel | SlackChannel, posted: Posted, answer: RatingAnswer
) -> None:
    """Edit the prompt to show who rated what: after the rating's commit, and only a
    courtesy (the next press shows it again); the rating stands if the edit fails."""
    assert answer.prompt is not None
    try:
        await channel.update_rating(posted, answer.prompt)
    except ChannelError as exc:
        log.warning("rating prompt not updated", provider=channel.provider, error=str(exc))
