"""A fake OpenAI-compatible chat completions API that checks requests as OpenAI does.

- ``POST /v1/chat/completions`` with ``Authorization: Bearer <key>`` (when the fake has a
  key): a wrong or missing key is a 401 ``invalid_api_key``; an unknown model a 404
  ``model_not_found``. The body must be a JSON object with ``model`` and a non-empty
  ``messages`` list of ``{role, content}``; ``temperature`` in [0, 2]; ``max_tokens`` a
  positive integer; ``stream`` is not served.
- ``response_format``: ``{type: text}``, ``{type: json_object}`` (the messages must say
  "json", as OpenAI insists) or ``{type: json_schema, json_schema: {name, schema,
  strict}}``; with ``strict: true`` the schema must fit OpenAI's strict subset (an object
  at the root, ``additionalProperties: false`` and every property required in every
  object, only the keywords strict mode supports). ``accepts`` says which types this
  server takes: without ``json_schema`` it answers 400 ``param: response_format``, as
  servers that do not support structured outputs do.
- Answers: ``chat.completion`` objects (``id``, ``object``, ``created``, ``model``,
  ``choices[{index, message{role, content, refusal}, logprobs, finish_reason}]``,
  ``usage``); errors: ``{"error": {"message", "type", "param", "code"}}``, 429 with
  ``Retry-After``.

Each test scripts the answers: a queue of :class:`Reply` (or functions of the request
body returning one), then ``responder`` when the queue is empty. Every request is
recorded with its bearer token, so a test can read the prompt heal sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes.server import Call, Recorder, serving

ROLES = {"system", "developer", "user", "assistant", "tool"}
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
# What OpenAI's strict mode supports; anything else in a strict schema is a 400.
STRICT_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "anyOf",
    "description",
    "title",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "$defs",
    "$ref",
}
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Reply:
    """One scripted answer: the assistant's ``content`` (200), or an error ``status``."""

    content: str | None = None
    status: int = 200
    message: str = ""
    error_type: str = ""
    code: str | None = None
    param: str | None = None
    retry_after: str | None = None
    delay: float = 0.0  # seconds before answering (a slow model)
    finish_reason: str = "stop"
    refusal: str | None = None


Script = Reply | Callable[[dict[str, Any]], Reply]


def answer(
    action: str | None = None,
    params: dict[str, Any] | None = None,
    confidence: Any = 0.8,
    rationale: str = "it usually helps",
    **extra: Any,
) -> Reply:
    """A well-formed proposal as the model would write it (keys left None are omitted)."""
    body: dict[str, Any] = {"action": action, "params": params, "confidence": confidence}
    body = {k: v for k, v in body.items() if v is not None}
    return Reply(json.dumps({**body, "rationale": rationale, **extra}))


def text(content: str) -> Reply:
    """Whatever text the model wrote, JSON or not."""
    return Reply(content)


def error(status: int, message: str = "", *, retry_after: str | None = None) -> Reply:
    """An error as OpenAI sends it for this status."""
    kinds = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        429: ("requests", "rate_limit_exceeded"),
        500: ("server_error", None),
        503: ("server_error", None),
    }
    error_type, code = kinds.get(status, ("server_error", None))
    default = {
        429: "Rate limit reached for requests. Please try again later.",
        500: "The server had an error while processing your request. Sorry about that!",
        503: "The engine is currently overloaded, please try again later.",
    }.get(status, "error")
    return Reply(
        status=status,
        message=message or default,
        error_type=error_type,
        code=code,
        retry_after=retry_after,
    )


def slow(seconds: float, reply: Reply | None = None) -> Reply:
    """``reply`` (a good answer by default) after ``seconds``."""
    base = reply or answer("open-ticket", {})
    base.delay = seconds
    return base


@dataclass
class ChatRequest:
    """One request as received: its body and its bearer token."""

    body: dict[str, Any]
    authorization: str | None
    valid: bool = False  # it passed validation: the model "read" it

    @property
    def prompt(self) -> str:
        """Every message's content, one after the other: what the model read."""
        return "\n".join(str(m.get("content")) for m in self.body.get("messages", []))

    @property
    def response_format(self) -> str | None:
        rf = self.body.get("response_format")
        return rf.get("type") if isinstance(rf, dict) else None


@dataclass
class FakeOpenAI(Recorder):
    api_key: str | None = None
    base_url: str = ""  # set while serving: http://127.0.0.1:PORT/v1
    models: tuple[str, ...] = ("qwen2.5:7b",)
    accepts: frozenset[str] = RESPONSE_FORMATS
    script: deque[Script] = field(default_factory=deque)
    responder: Callable[[dict[str, Any]], Reply] | None = None
    requests: list[ChatRequest] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    def then(self, *replies: Script) -> FakeOpenAI:
        """Queue these answers, in order."""
        self.script.extend(replies)
        return self

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._handle, methods=["POST"])])

    def close(self) -> None:
        """End every slow answer still waiting, so the server can stop."""
        self._closing.set()

    @property
    def answered(self) -> list[ChatRequest]:
        """The requests that passed validation (those the model 'read')."""
        return [r for r in self.requests if r.valid]

    async def _handle(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            shown = (authorization or "").removeprefix("Bearer ")
            masked = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else "***"
            return _error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                code="invalid_api_key",
            )
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
                "invalid_request_error",
            )
        recorded = ChatRequest(body, authorization)
        self.requests.append(recorded)
        self.calls.append(Call("chat.completions", body))
        problem = self._problem(body)
        if problem is not None:
            return problem
        recorded.valid = True
        reply = self._next(body)
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay)
        if reply.status != 200:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after else None
            return _error(
                reply.status,
                reply.message,
                reply.error_type,
                param=reply.param,
                code=reply.code,
                headers=headers,
            )
        return JSONResponse(self._completion(body, reply))

    def _next(self, body: dict[str, Any]) -> Reply:
        scripted = self.script.popleft() if self.script else self.responder
        if scripted is None:
            return error(500, "the fake has no scripted answer left")
        return scripted if isinstance(scripted, Reply) else scripted(body)

    def _problem(self, body: dict[str, Any]) -> Response | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error")
        if model not in self.models:
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                code="model_not_found",
            )
        problem = _messages_problem(body.get("messages"))
        if problem is None:
            problem = _sampling_problem(body)
        if problem is None:
            problem = self._format_problem(body)
        return problem

    def _format_problem(self, body: dict[str, Any]) -> Response | None:
        rf = body.get("response_format")
        if rf is None:
            return None
        kind = rf.get("type") if isinstance(rf, dict) else None
        if kind not in RESPONSE_FORMATS:
            return _invalid(
                f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and "
                "'json_schema'.",
                "response_format.type",
            )
        if kind not in self.accepts:
            return _invalid(
                f"Invalid parameter: 'response_format' of type '{kind}' is not supported "
                "with this model.",
                "response_format",
            )
        if kind == "json_object":
            text_ = json.dumps(body["messages"]).lower()
            if "json" not in text_:
                return _invalid(
                    "'messages' must contain the word 'json' in some form, to use "
                    "'response_format' of type 'json_object'.",
                    "messages",
                )
        if kind == "json_schema":
            return _json_schema_problem(rf.get("json_schema"))
        return None

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len((reply.content or "").split())
        return {
            "id": f"chatcmpl-fake{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": reply.content,
                        "refusal": reply.refusal,
                    },
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


@contextlib.asynccontextmanager
async def serving_openai(fake: FakeOpenAI) -> AsyncIterator[str]:
    """Yields the API's base URL (``.../v1``) while the fake serves."""
    async with serving(fake.app()) as url:
        fake.base_url = f"{url}/v1"
        try:
            yield fake.base_url
        finally:
            fake.close()


def _messages_problem(messages: Any) -> Response | None:
    if messages is None:
        return _invalid("Missing required parameter: 'messages'.", "messages", "missing_required")
    if not isinstance(messages, list):
        return _invalid(f"Invalid type for 'messages': expected an array, but got {messages!r}.")
    if not messages:
        return _invalid("Invalid 'messages': empty array.", "messages", "empty_array")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            return _invalid(f"Invalid type for '{where}': expected an object.", where)
        if message.get("role") not in ROLES:
            return _invalid(
                f"Invalid value: {message.get('role')!r}. Supported values are: "
                + ", ".join(f"'{r}'" for r in sorted(ROLES)),
                f"{where}.role",
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            return _invalid(
                f"Invalid type for '{where}.content': expected one of a string or array of "
                "objects.",
                f"{where}.content",
            )
    return None


def _sampling_problem(body: dict[str, Any]) -> Response | None:
    if body.get("stream"):
        return _invalid("this fake does not stream", "stream")
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        return _invalid(
            f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but "
            f"got {temperature} instead.",
            "temperature",
            "decimal_above_max_value",
        )
    max_tokens = body.get("max_tokens", 1)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return _invalid(
            f"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but "
            f"got {max_tokens} instead.",
            "max_tokens",
            "integer_below_min_value",
        )
    return None


def _json_schema_problem(spec: Any) -> Response | None:
    if not isinstance(spec, dict):
        return _invalid(
            "Missing required parameter: 'response_format.json_schema'.",
            "response_format.json_schema",
            "missing_required_parameter",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        return _invalid(
            f"Invalid 'response_format.json_schema.name': string does not match pattern. "
            f"Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$', got {name!r}.",
            "response_format.json_schema.name",
            "invalid_value",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        return _invalid(
            "Invalid type for 'response_format.json_schema.schema': expected an object.",
            "response_format.json_schema.schema",
        )
    if spec.get("strict"):
        problem = _strict_problem(schema, ())
        if problem is not None:
            return _invalid(
                f"Invalid schema for response_format '{name}': {problem}", "response_format"
            )
    return None


def _strict_problem(schema: dict[str, Any], where: tuple[str, ...]) -> str | None:
    context = f"In context={where}, "
    for keyword in schema:
        if keyword not in STRICT_KEYWORDS:
            return f"{context}'{keyword}' is not permitted."
    if not where and schema.get("type") != "object":
        return f"{context}schema must be a JSON Schema of 'type: \"object\"', got '{schema}'."
    types = schema.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        if schema.get("additionalProperties") is not False:
            return f"{context}'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties", {})
        missing = [p for p in properties if p not in schema.get("required", [])]
        if missing:
            return (
                f"{context}'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
        for key, sub in properties.items():
            problem = _strict_problem(sub, (*where, "properties", key))
            if problem is not None:
                return problem
    for index, sub in enumerate(schema.get("anyOf", [])):
        problem = _strict_problem(sub, (*where, "anyOf", str(index)))
        if problem is not None:
            return problem
    if isinstance(schema.get("items"), dict):
        return _strict_problem(schema["items"], (*where, "items"))
    return None


def _invalid(message: str, param: str | None = None, code: str | None = None) -> Response:
    return _error(400, message, "invalid_request_error", param=param, code=code)


def _error(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)
