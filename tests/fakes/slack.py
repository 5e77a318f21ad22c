"""A fake Slack Web API that checks request shapes as Slack does.

Methods: chat.postMessage, chat.update, chat.postEphemeral on ``/api/<method>`` with a
Bearer bot token and JSON bodies, answering ``{ok: true, ...}`` or ``{ok: false,
error}`` (HTTP 200, as Slack does), and HTTP 429 with ``Retry-After`` when rate limited.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fakes.server import Call, Recorder

BLOCK_TYPES = {"header", "section", "actions", "context", "divider"}


@dataclass
class FakeSlack(Recorder):
    token: str
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rate_limited: int = 0  # answer this many next calls with 429
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/{method}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        method = request.path_params["method"]
        payload = await request.json()
        self.calls.append(Call(method, payload))
        if self.rate_limited:
            self.rate_limited -= 1
            return JSONResponse(
                {"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": "1"}
            )
        handler = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.postEphemeral": self._ephemeral,
        }.get(method)
        if handler is None:
            return JSONResponse({"ok": False, "error": "unknown_method"})
        return handler(payload)

    def _post(self, p: dict[str, Any]) -> JSONResponse:
        channel = p.get("channel")
        if not isinstance(channel, str) or not channel:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        if not p.get("text") and not p.get("blocks"):
            return JSONResponse({"ok": False, "error": "no_text"})
        if "blocks" in p and blocks_problem(p["blocks"]):
            return JSONResponse({"ok": False, "error": "invalid_blocks"})
        thread = p.get("thread_ts")
        if thread is not None:
            parent = self.messages.get((channel, thread))
            if parent is None or "thread_ts" in parent:  # replies name the thread's root
                return JSONResponse({"ok": False, "error": "thread_not_found"})
        ts = f"1700000000.{next(self._ts):06d}"
        message = {"type": "message", "ts": ts, "text": p.get("text", ""), "bot_id": "B1"}
        for key in ("blocks", "thread_ts"):
            if key in p:
                message[key] = p[key]
        self.messages[(channel, ts)] = message
        return JSONResponse({"ok": True, "channel": channel, "ts": ts, "message": message})

    def _update(self, p: dict[str, Any]) -> JSONResponse:
        message = self.messages.get((str(p.get("channel")), str(p.get("ts"))))
        if message is None:
            return JSONResponse({"ok": False, "error": "message_not_found"})
        if "blocks" in p and blocks_problem(p["blocks"]):
            return JSONResponse({"ok": False, "error": "invalid_blocks"})
        message.update({k: p[k] for k in ("text", "blocks") if k in p})
        return JSONResponse(
            {"ok": True, "channel": p["channel"], "ts": p["ts"], "text": message["text"]}
        )

    def _ephemeral(self, p: dict[str, Any]) -> JSONResponse:
        if not p.get("channel") or not p.get("user") or not p.get("text"):
            return JSONResponse({"ok": False, "error": "invalid_arguments"})
        return JSONResponse({"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"})

    def buttons(self, channel: str, ts: str) -> list[str]:
        """The action_ids of the buttons a message shows now."""
        blocks = self.messages[(channel, ts)].get("blocks", [])
        return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def blocks_problem(blocks: Any) -> bool:
    if not isinstance(blocks, list) or len(blocks) > 50:
        return True
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            return True
        if block["type"] == "header" and len(block.get("text", {}).get("text", "")) > 150:
            return True
        if block["type"] == "section":
            fields = block.get("fields", [])
            if len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields):
                return True
        if block["type"] == "actions":
            for element in block.get("elements", []):
                if element.get("type") != "button" or not element.get("action_id"):
                    return True
                if element.get("text", {}).get("type") != "plain_text":
                    return True
    return False
