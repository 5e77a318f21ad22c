"""Fake incoming-webhook receivers that answer as the real ones do.

- ``FakeReceiver``: a generic webhook receiver that verifies heal's signature with the
  recipe of docs/closed-loop.md (HMAC-SHA256 over timestamp + "." + raw body, a timestamp
  at most five minutes old); 401 when it does not verify.
- ``FakeDiscord``: Discord's execute-webhook endpoint: 204 on success; 400 with a JSON
  error for an empty or too long ``content``; 429 with ``retry_after`` (seconds) in the
  JSON body and a ``Retry-After`` header when rate limited; 404 for an unknown webhook.
- ``FakeTeams``: a Teams incoming webhook (MessageCard): 200 with the body ``1``; 400 with
  a text error for a card without text or summary; 429 when throttled; or, as older
  connectors did, 200 with an error text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fakes.server import Call, Recorder

TOLERANCE_SECONDS = 300


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """The receiver's side of heal's signature, exactly as documented."""
    timestamp = headers.get("x-heal-timestamp", "")
    given = headers.get("x-heal-signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(given, "sha256=" + expected.hexdigest())


@dataclass
class FakeReceiver(Recorder):
    secret: str
    fail_with: int | None = None  # answer every call with this status
    # The receiver's clock, for the timestamp check (tests move heal's clock by hand).
    now: float = field(default_factory=time.time)
    rejected: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        if not verify(self.secret, dict(request.headers), body, self.now):
            self.rejected += 1
            return PlainTextResponse("bad signature", status_code=401)
        if self.fail_with is not None:
            return PlainTextResponse("no", status_code=self.fail_with)
        self.calls.append(Call(request.headers.get("x-heal-event", ""), json.loads(body)))
        return Response(status_code=204)


@dataclass
class FakeDiscord(Recorder):
    rate_limited: int = 0
    retry_after: float = 1.5

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/api/webhooks/{id}/{token}", self._handle, methods=["POST"])]
        )

    async def _handle(self, request: Request) -> Response:
        if request.path_params["token"] != "good-token":
            return JSONResponse({"message": "Unknown Webhook", "code": 10015}, status_code=404)
        payload: dict[str, Any] = await request.json()
        if self.rate_limited:
            self.rate_limited -= 1
            return JSONResponse(
                {
                    "message": "You are being rate limited.",
                    "retry_after": self.retry_after,
                    "global": False,
                },
                status_code=429,
                headers={"Retry-After": str(int(self.retry_after + 1))},
            )
        content = payload.get("content")
        if not isinstance(content, str) or not content or len(content) > 2000:
            return JSONResponse({"message": "Invalid Form Body", "code": 50035}, status_code=400)
        self.calls.append(Call("execute", payload))
        return Response(status_code=204)


@dataclass
class FakeTeams(Recorder):
    throttled: int = 0
    # Older connectors answered 200 with an error text instead of an error status.
    answer_200_with: str | None = None

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhookb2/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        payload: dict[str, Any] = await request.json()
        if self.throttled:
            self.throttled -= 1
            return PlainTextResponse(
                "Microsoft Teams endpoint returned HTTP error 429", status_code=429
            )
        if self.answer_200_with is not None:
            return PlainTextResponse(self.answer_200_with)
        if payload.get("@type") != "MessageCard" or not (
            payload.get("text") or payload.get("summary")
        ):
            return PlainTextResponse("Summary or Text is required.", status_code=400)
        self.calls.append(Call("card", payload))
        return PlainTextResponse("1")
