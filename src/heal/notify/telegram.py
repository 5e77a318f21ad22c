"""Telegram Bot API: cards with inline keyboards, replies, callback answers."""

from __future__ import annotations

from typing import Any

import httpx

from heal.notify.cards import BUTTONS, SCORES, Card, RatingPrompt, button_data, rating_data
from heal.notify.channels import ChannelError, Posted

DEFAULT_API_URL = "https://api.telegram.org"
_NOT_MODIFIED = "message is not modified"


class TelegramChannel:
    provider = "telegram"

    def __init__(
        self,
        token: str,
        chat_id: str,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
    ) -> None:
        self.chat_id = chat_id
        # The token is part of every URL: keep it out of anything this class says.
        self._base = f"{api_url.rstrip('/')}/bot{token}/"
        self._client = httpx.AsyncClient(timeout=timeout)

    async def call(self, method: str, payload: dict[str, Any]) -> Any:
        """One Bot API method; its ``result``, or ChannelError with Telegram's words."""
        try:
            response = await self._client.post(self._base + method, json=payload)
        except httpx.HTTPError as exc:
            raise ChannelError(f"telegram {method}: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            raise ChannelError(
                f"telegram {method}: HTTP {response.status_code}, not JSON"
            ) from None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        body = body if isinstance(body, dict) else {}
        description = str(body.get("description") or f"HTTP {response.status_code}")
        parameters = body.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        raise ChannelError(
            f"telegram {method}: {description}",
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            # 400 (bad request), 401/403 (bad token, bot removed), 404: a retry will not help.
            permanent=response.status_code in (400, 401, 403, 404),
        )

    async def post_card(self, card: Card, *, under: Posted | None = None) -> Posted:
        keyboard = [
            [{"text": label, "callback_data": button_data(card.approval_id, verb)}]
            for verb, label in BUTTONS
        ]
        return await self._send(card.text(), under, {"inline_keyboard": keyboard})

    async def post_text(self, text: str, *, under: Posted | None = None) -> Posted:
        return await self._send(text, under, None)

    async def close_card(self, posted: Posted, card: Card, outcome: str) -> None:
        try:
            await self.call(
                "editMessageReplyMarkup",
                {
                    "chat_id": posted.chat_id,
                    "message_id": int(posted.message_id),
                    "reply_markup": {"inline_keyboard": []},
                },
            )
        except ChannelError as exc:
            if _NOT_MODIFIED not in str(exc):  # already closed: nothing to do
                raise

    async def post_rating(self, prompt: RatingPrompt, *, under: Posted | None = None) -> Posted:
        return await self._send(prompt.text(), under, _rating_keyboard(prompt))

    async def update_rating(self, posted: Posted, prompt: RatingPrompt) -> None:
        try:
            await self.call(
                "editMessageText",
                {
                    "chat_id": posted.chat_id,
                    "message_id": int(posted.message_id),
                    "text": prompt.text()[:4096],
                    "reply_markup": _rating_keyboard(prompt),
                },
            )
        except ChannelError as exc:
            if _NOT_MODIFIED not in str(exc):  # it shows this already
                raise

    async def answer_callback(self, callback_id: str, text: str, *, alert: bool = False) -> None:
        await self.call(
            "answerCallbackQuery",
            {"callback_query_id": callback_id, "text": text[:200], "show_alert": alert},
        )

    async def _send(self, text: str, under: Posted | None, markup: dict[str, Any] | None) -> Posted:
        chat_id = under.chat_id if under else self.chat_id
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text[:4096]}
        if under is not None:
            payload["reply_parameters"] = {
                "message_id": int(under.message_id),
                "allow_sending_without_reply": True,
            }
        if markup is not None:
            payload["reply_markup"] = markup
        result = await self.call("sendMessage", payload)
        try:
            chat, message_id = result["chat"]["id"], result["message_id"]
        except (KeyError, TypeError):
            raise ChannelError("telegram sendMessage: answer without chat.id/message_id") from None
        return Posted(str(chat), str(message_id), under.root if under else None)

    async def aclose(self) -> None:
        await self._client.aclose()


def _rating_keyboard(prompt: RatingPrompt) -> dict[str, Any]:
    """One row of five buttons, 1 to 5."""
    row = [
        {"text": str(score), "callback_data": rating_data(prompt.incident_id, score)}
        for score in SCORES
    ]
    return {"inline_keyboard": [row]}
