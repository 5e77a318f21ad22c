"""A fake StackStorm API (st2api v1) that speaks st2's shapes (st2common's openapi.yaml).

- ``POST /executions``: body ``{action, parameters}``; the ``st2-context`` header (a JSON
  object) is merged into the execution's ``context`` after ``user`` and ``pack``, as
  st2's ``_schedule_execution`` does; 201 with the execution (``id``, ``status``
  ``requested``, ``web_url`` ``.../#/history/<id>/general``).
- ``GET /executions``: the ``action``, ``status``, ``limit`` (at most 100, st2's page
  cap), ``offset`` and ``include_attributes`` (comma-separated) filters, newest first.
- ``GET /executions/{id}``: each look moves the execution one status along its plan.
- ``DELETE /executions/{id}``: cancels (``canceling``, then ``canceled``); an execution
  that already ended answers 200 with a ``faultstring``, as st2 does.
- Auth: ``St2-Api-Key`` or ``X-Auth-Token``; wrong or missing answers 401 with st2's
  ``faultstring``s. Errors are ``{"faultstring": ...}``; an unknown action ref is a 400
  ``Action "x" cannot be found.``, an unknown execution a 404.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fakes.server import Call, Recorder

MAX_PAGE_SIZE = 100
CANCELABLE = {
    "requested",
    "scheduled",
    "delayed",
    "running",
    "pausing",
    "paused",
    "resuming",
    "pending",
}
COMPLETED = {"succeeded", "failed", "timeout", "canceled", "abandoned"}
OK_RESULT: dict[str, Any] = {"stdout": "interface up", "stderr": "", "exit_code": 0}


@dataclass
class Plan:
    """The statuses an execution goes through, one per look, and its result at the end."""

    statuses: list[str] = field(default_factory=lambda: ["running", "succeeded"])
    result: dict[str, Any] = field(default_factory=lambda: dict(OK_RESULT))


@dataclass
class Execution:
    id: str
    ref: str
    parameters: dict[str, Any]
    context: dict[str, Any]
    plan: Plan
    start_timestamp: str
    web_url: str
    status: str = "requested"
    looks: int = 0
    result: dict[str, Any] = field(default_factory=dict)

    def as_api(self) -> dict[str, Any]:
        pack, _, name = self.ref.partition(".")
        return {
            "id": self.id,
            "action": {"ref": self.ref, "pack": pack, "name": name, "runner_type": "python-script"},
            "runner": {"name": "python-script"},
            "liveaction": {"id": f"l{self.id[1:]}"},
            "parameters": self.parameters,
            "status": self.status,
            "start_timestamp": self.start_timestamp,
            "context": self.context,
            "result": self.result,
            "web_url": self.web_url,
            "log": [],
        }

    def look(self) -> None:
        """What st2's runners do between two GETs."""
        if self.status in COMPLETED:
            return
        if self.status == "canceling":
            self.status = "canceled"
            return
        self.status = self.plan.statuses[min(self.looks, len(self.plan.statuses) - 1)]
        self.looks += 1
        if self.status in COMPLETED:
            self.result = self.plan.result


@dataclass
class FakeSt2(Recorder):
    api_keys: set[str] = field(default_factory=lambda: {"st2-key-123"})
    tokens: set[str] = field(default_factory=lambda: {"st2-token-456"})
    actions: set[str] = field(
        default_factory=lambda: {
            "network.remediation.enable_interface",
            "network.remediation.reduce_cpu",
            "network.remediation.generic_fix",
            "core.local",
        }
    )
    plans: dict[str, Plan] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    # POSTs whose execution is created but whose answer is lost (a proxy's 502)
    lose_answers: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _started: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 12, tzinfo=UTC))

    def posted(self) -> list[Execution]:
        return list(self.executions.values())


def _fault(message: str, status: int) -> JSONResponse:
    return JSONResponse({"faultstring": message}, status_code=status)


def _unauthorized(fake: FakeSt2, request: Request) -> JSONResponse | None:
    """st2's router: the API key or the token must be known (either one)."""
    key = request.headers.get("St2-Api-Key")
    token = request.headers.get("X-Auth-Token")
    if key is None and token is None:
        return _fault("Unauthorized - One of Token or API key required.", 401)
    if token is not None and token not in fake.tokens:
        return _fault("Unauthorized", 401)  # str(TokenNotFoundError()) is empty
    if token is None and key not in fake.api_keys:
        digest = hashlib.sha256((key or "").encode()).hexdigest()
        return _fault(f"Unauthorized - ApiKey with key_hash={digest} not found.", 401)
    return None


def create_app(fake: FakeSt2) -> Starlette:
    async def record(request: Request, payload: dict[str, Any]) -> JSONResponse | None:
        used = [h for h in ("St2-Api-Key", "X-Auth-Token") if h in request.headers]
        fake.calls.append(Call(f"{request.method} {request.url.path}", {**payload, "_auth": used}))
        return _unauthorized(fake, request)

    async def executions(request: Request) -> JSONResponse:
        if request.method == "POST":
            return await post(request)
        params = dict(request.query_params)
        refused = await record(request, params)
        if refused:
            return refused
        try:
            limit = int(params.get("limit", MAX_PAGE_SIZE))
            offset = int(params.get("offset", 0))
        except ValueError:
            return _fault("limit and offset must be integers", 400)
        if limit > MAX_PAGE_SIZE:
            return _fault(
                f'Limit "{limit}" specified exceeds maximum page size "{MAX_PAGE_SIZE}"', 400
            )
        found = [
            e
            for e in sorted(fake.executions.values(), key=lambda e: e.start_timestamp, reverse=True)
            if params.get("action") in (None, e.ref) and params.get("status") in (None, e.status)
        ]
        page = [e.as_api() for e in found[offset : offset + limit]]
        fields = params.get("include_attributes")
        if fields:
            wanted = set(fields.split(","))
            page = [{k: v for k, v in e.items() if k in wanted} for e in page]
        return JSONResponse(page, headers={"X-Total-Count": str(len(found))})

    async def post(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        header = request.headers.get("st2-context")
        refused = await record(request, {"body": body, "st2-context": header})
        if refused:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return _fault("'action' is a required property", 400)
        ref = body["action"]
        if ref not in fake.actions:
            return _fault(f'Action "{ref}" cannot be found.', 400)
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            return _fault(f"{parameters!r} is not of type 'object'", 400)
        context: dict[str, Any] = {"user": "heal-bot", "pack": ref.split(".", 1)[0]}
        if header:
            try:
                extra = json.loads(header)
            except ValueError:
                extra = header
            if not isinstance(extra, dict):
                return _fault(
                    "Unable to convert st2-context from the headers into JSON"
                    f" (was {type(extra)}).",
                    400,
                )
            context.update(extra)
        number = next(fake._ids)
        execution_id = f"6{number:023x}"
        started = fake._started + timedelta(seconds=number)
        execution = Execution(
            id=execution_id,
            ref=ref,
            parameters=parameters,
            context=context,
            plan=fake.plans.get(ref, Plan()),
            start_timestamp=started.isoformat().replace("+00:00", ".000000Z"),
            web_url=f"https://st2.example.com/#/history/{execution_id}/general",
        )
        fake.executions[execution_id] = execution
        if fake.lose_answers > 0:
            fake.lose_answers -= 1
            return JSONResponse({"faultstring": "Bad Gateway"}, status_code=502)
        return JSONResponse(execution.as_api(), status_code=201)

    async def one(request: Request) -> JSONResponse:
        execution_id = request.path_params["id"]
        refused = await record(request, {"id": execution_id})
        if refused:
            return refused
        execution = fake.executions.get(execution_id)
        if execution is None:
            return _fault(f'Unable to identify resource with id "{execution_id}".', 404)
        if request.method == "DELETE":
            if execution.status == "canceled":
                return JSONResponse(execution.as_api())
            if execution.status not in CANCELABLE:
                return _fault(f"Action cannot be canceled. State = {execution.status}.", 200)
            execution.status = "canceling"
            return JSONResponse(execution.as_api())
        execution.look()
        return JSONResponse(execution.as_api())

    return Starlette(
        routes=[
            Route("/api/v1/executions", executions, methods=["GET", "POST"]),
            Route("/api/v1/executions/{id}", one, methods=["GET", "DELETE"]),
        ]
    )
