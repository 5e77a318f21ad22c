"""A fake Telegram Bot API that checks request shapes as Telegram does.

Methods: sendMessage, editMessageReplyMarkup, editMessageText, answerCallbackQuery, on
``/bot<token>/<method>`` with JSON bodies, answering ``{ok, result}`` or
``{ok: false, error_code, description[, parameters.retry_after]}``. Every request is
recorded; failures can be queued to test retries.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fakes.server import Call, Recorder


@dataclass
class FakeTelegram(Recorder):
    token: str
    # (chat_id, message_id) -> the message as Telegram would return it
    messages: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    failures: list[tuple[int, str, int | None]] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(101))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/bot{token}/{method}", self._handle, methods=["POST"])])

    def fail_next(self, code: int, description: str, retry_after: int | None = None) -> None:
        self.failures.append((code, description, retry_after))

    async def _handle(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.path_params["method"]
        try:
            payload = await request.json()
        except ValueError:
            return _error(400, "Bad Request: invalid JSON")
        self.calls.append(Call(method, payload))
        if self.failures:
            code, description, retry_after = self.failures.pop(0)
            return _error(code, description, retry_after)
        handler = {
            "sendMessage": self._send_message,
            "editMessageReplyMarkup": self._edit_markup,
            "editMessageText": self._edit_text,
            "answerCallbackQuery": self._answer,
        }.get(method)
        if handler is None:
            return _error(404, "Not Found: method not found")
        return handler(payload)

    def _send_message(self, p: dict[str, Any]) -> JSONResponse:
        chat_id, text = p.get("chat_id"), p.get("text")
        if not isinstance(chat_id, int | str) or chat_id == "":
            return _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        if "reply_markup" in p and (problem := _keyboard_problem(p["reply_markup"])):
            return _error(400, f"Bad Request: {problem}")
        reply = p.get("reply_parameters")
        if reply is not None:
            if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
                return _error(400, "Bad Request: reply_parameters.message_id must be an integer")
            if (str(chat_id), reply["message_id"]) not in self.messages and not reply.get(
                "allow_sending_without_reply"
            ):
                return _error(400, "Bad Request: message to be replied not found")
        message_id = next(self._ids)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {
                "id": int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id,
                "type": "supergroup",
            },
            "text": text,
        }
        if "reply_markup" in p:
            message["reply_markup"] = p["reply_markup"]
        if reply is not None:
            message["reply_to_message"] = self.messages.get((str(chat_id), reply["message_id"]))
        self.messages[(str(chat_id), message_id)] = message
        return JSONResponse({"ok": True, "result": message})

    def _edit_markup(self, p: dict[str, Any]) -> JSONResponse:
        key = (str(p.get("chat_id")), p.get("message_id"))
        if not isinstance(key[1], int):
            return _error(400, "Bad Request: message_id must be an integer")
        message = self.messages.get(key)  # type: ignore[arg-type]
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        markup = p.get("reply_markup") or {"inline_keyboard": []}
        if problem := _keyboard_problem(markup):
            return _error(400, f"Bad Request: {problem}")
        if message.get("reply_markup", {"inline_keyboard": []}) == markup:
            return _error(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        message["reply_markup"] = markup
        return JSONResponse({"ok": True, "result": message})

    def _edit_text(self, p: dict[str, Any]) -> JSONResponse:
        key = (str(p.get("chat_id")), p.get("message_id"))
        if not isinstance(key[1], int):
            return _error(400, "Bad Request: message_id must be an integer")
        message = self.messages.get(key)  # type: ignore[arg-type]
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: MESSAGE_TOO_LONG")
        # As Telegram does: an edit without reply_markup removes the inline keyboard.
        markup = p.get("reply_markup")
        if markup is not None and (problem := _keyboard_problem(markup)):
            return _error(400, f"Bad Request: {problem}")
        if message["text"] == text and message.get("reply_markup") == markup:
            return _error(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        message["text"] = text
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        return JSONResponse({"ok": True, "result": message})

    def _answer(self, p: dict[str, Any]) -> JSONResponse:
        query_id = p.get("callback_query_id")
        if not isinstance(query_id, str):
            return _error(400, "Bad Request: callback_query_id is empty")
        if len(p.get("text", "")) > 200:
            return _error(400, "Bad Request: text is too long")
        if query_id in self.answered:  # a query is answered once; a redelivery is too late
            return _error(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.answered.add(query_id)
        return JSONResponse({"ok": True, "result": True})

    def keyboard(self, chat_id: str, message_id: int) -> list[list[dict[str, Any]]]:
        message = self.messages[(chat_id, message_id)]
        keyboard: list[list[dict[str, Any]]] = message.get("reply_markup", {}).get(
            "inline_keyboard", []
        )
        return keyboard


def _keyboard_problem(markup: Any) -> str | None:
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        return 'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                return "can't parse inline keyboard button: Text buttons are unallowed"
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                return "BUTTON_DATA_INVALID"
    return None


def _error(code: int, description: str, retry_after: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=code)
