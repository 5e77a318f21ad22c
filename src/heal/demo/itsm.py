"""A contract-faithful fake ITSM (ticketing) server.

It imitates a ticketing API such as BlueKing ITSM closely enough for heal's demo, tests and
benchmarks: every response is a JSON envelope ``{"result", "code", "message", "data"}``, tickets
progress from ``RUNNING`` to a final status as they are polled, and faults (HTTP 500s, envelope
errors, latency, auth) can be injected.  State lives in memory on a :class:`FakeITSM` instance so
tests can inspect it directly (``tickets``, ``requests``, ``overlaps``).

API routes (what heal talks to) are recorded in :attr:`FakeITSM.requests`, delayed by
``latency`` and watched by the overlap detector.  Control/inspection routes (``/_stats``,
``/_tickets/{sn}/finish``, ``/ticket/{sn}``) are not recorded or delayed, but do require the
token when one is configured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = [
    "ACTION_HEADER",
    "IDEMPOTENCY_HEADER",
    "FakeITSM",
    "RequestRecord",
    "Ticket",
    "create_app",
    "main",
    "serve_in_background",
    "stop",
]

ACTION_HEADER = "X-Heal-Action"
IDEMPOTENCY_HEADER = "Idempotency-Key"
UPDATED_BY = "fake-itsm"

RUNNING = "RUNNING"
_OPERATIONS = {"WITHDRAW": "REVOKED", "TERMINATE": "TERMINATED"}

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Ticket:
    """One ticket held by the fake."""

    sn: str
    id: int
    title: str | None
    fields: list[dict[str, Any]]
    kind: str = "ticket"
    current_status: str = RUNNING
    approve_result: bool | None = None
    polls: int = 0
    approvers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_dict(self) -> dict[str, Any]:
        return {
            "sn": self.sn,
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "fields": self.fields,
            "current_status": self.current_status,
            "approve_result": self.approve_result,
            "polls": self.polls,
            "approvers": self.approvers,
            "extra": self.extra,
            "created_at": self.created_at,
        }


@dataclass
class RequestRecord:
    """One API request as seen by the fake (times are ``time.monotonic()``)."""

    method: str
    path: str
    idempotency_key: str | None
    action_key: str | None
    started: float
    ended: float | None = None
    status_code: int | None = None


class FakeITSM:
    """In-memory state and behaviour of the fake ITSM.

    :param finish_after_polls: status polls after which a RUNNING ticket reaches ``final_status``.
    :param approve: the ``approve_result`` reported once a ticket is finished by polling.
    :param final_status: status a ticket reaches after ``finish_after_polls`` polls.
    :param fail_create_times: the first N ``create_ticket`` calls answer HTTP 500.
    :param envelope_error_times: the N ``create_ticket`` calls after those answer HTTP 200 with
        ``result: false`` (code 9999).
    :param latency: seconds every API handler sleeps (inside the overlap-detection window).
    :param token: when set, every request must carry ``Authorization: Bearer <token>``.
    """

    def __init__(
        self,
        *,
        finish_after_polls: int = 2,
        approve: bool = True,
        final_status: str = "FINISHED",
        fail_create_times: int = 0,
        envelope_error_times: int = 0,
        latency: float = 0.0,
        token: str | None = None,
    ) -> None:
        self.finish_after_polls = finish_after_polls
        self.approve = approve
        self.final_status = final_status
        self.fail_create_times = fail_create_times
        self.envelope_error_times = envelope_error_times
        self.latency = latency
        self.token = token

        self.tickets: dict[str, Ticket] = {}
        self.requests: list[RequestRecord] = []
        self.overlaps = 0
        self.create_calls = 0
        self._in_flight: dict[str, int] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._counter = 0

    # -- inspection ------------------------------------------------------------------------

    @property
    def tickets_created(self) -> int:
        return len(self.tickets)

    def stats(self) -> dict[str, int]:
        return {
            "tickets_created": self.tickets_created,
            "requests": len(self.requests),
            "overlaps": self.overlaps,
        }

    def requests_to(self, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path]

    # -- behaviour -------------------------------------------------------------------------

    def create(
        self,
        fields: list[dict[str, Any]],
        *,
        extra: dict[str, Any] | None = None,
        kind: str = "ticket",
        approvers: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Ticket, bool]:
        """Create a ticket, or return the one already made for ``idempotency_key``.

        Returns ``(ticket, created)``.
        """
        if idempotency_key is not None:
            existing = self._idempotency.get((kind, idempotency_key))
            if existing is not None:
                return self.tickets[existing], False
        extra = dict(extra or {})
        title = _field_value(fields, "title")
        if title is None and isinstance(extra.get("title"), str):
            title = extra["title"]
        self._counter += 1
        ticket = Ticket(
            sn=f"REQ{self._counter:08d}",
            id=self._counter,
            title=None if title is None else str(title),
            fields=fields,
            kind=kind,
            approvers=list(approvers or []),
            extra=extra,
        )
        self.tickets[ticket.sn] = ticket
        if idempotency_key is not None:
            self._idempotency[(kind, idempotency_key)] = ticket.sn
        return ticket, True

    def poll(self, sn: str) -> Ticket | None:
        """Count one status poll; a RUNNING ticket finishes after ``finish_after_polls``."""
        ticket = self.tickets.get(sn)
        if ticket is None:
            return None
        ticket.polls += 1
        if ticket.current_status == RUNNING and ticket.polls >= self.finish_after_polls:
            ticket.current_status = self.final_status
            ticket.approve_result = self.approve
        return ticket

    def finish(self, sn: str, *, approve: bool = True, status: str = "FINISHED") -> Ticket | None:
        """Finish a ticket by hand (regardless of polls)."""
        ticket = self.tickets.get(sn)
        if ticket is None:
            return None
        ticket.current_status = status
        ticket.approve_result = approve
        return ticket

    # -- request bookkeeping (single event loop: no locks needed) ---------------------------

    def _enter(self, record: RequestRecord) -> None:
        self.requests.append(record)
        key = record.action_key
        if key is not None:
            count = self._in_flight.get(key, 0)
            if count > 0:
                self.overlaps += 1
            self._in_flight[key] = count + 1

    def _leave(self, record: RequestRecord) -> None:
        record.ended = time.monotonic()
        key = record.action_key
        if key is not None:
            count = self._in_flight.get(key, 0) - 1
            if count > 0:
                self._in_flight[key] = count
            else:
                self._in_flight.pop(key, None)

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        return request.headers.get("authorization") == f"Bearer {self.token}"


# -- helpers ---------------------------------------------------------------------------------


def _envelope(
    data: Any = None,
    *,
    result: bool = True,
    code: int = 0,
    message: str = "success",
    status_code: int = 200,
) -> JSONResponse:
    body = {"result": result, "code": code, "message": message, "data": data}
    return JSONResponse(body, status_code=status_code)


def _error(message: str, *, code: int, status_code: int = 200) -> JSONResponse:
    return _envelope(None, result=False, code=code, message=message, status_code=status_code)


def _field_value(fields: list[dict[str, Any]], key: str) -> Any:
    for item in fields:
        if item.get("key") == key:
            return item.get("value")
    return None


def _itsm(request: Request) -> FakeITSM:
    return cast(FakeITSM, request.app.state.itsm)


def _ticket_url(request: Request, sn: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/ticket/{sn}"


def _unauthorized() -> JSONResponse:
    return _error("unauthorized: missing or invalid bearer token", code=401, status_code=401)


async def _json_object(request: Request) -> dict[str, Any] | JSONResponse:
    """The body as a JSON object, or a 400 envelope naming the problem."""
    try:
        body = await request.json()
    except ValueError:
        return _error("request body is not valid JSON", code=400, status_code=400)
    if not isinstance(body, dict):
        return _error("request body must be a JSON object", code=400, status_code=400)
    return body


def _validated_fields(body: dict[str, Any]) -> list[dict[str, Any]] | JSONResponse:
    fields = body.get("fields")
    if not isinstance(fields, list):
        return _error(
            "'fields' is required and must be a list of {key, value} objects",
            code=400,
            status_code=400,
        )
    for index, item in enumerate(fields):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            return _error(
                f"fields[{index}] must be an object with a string 'key'", code=400, status_code=400
            )
    return cast(list[dict[str, Any]], fields)


def _api(handler: Handler) -> Handler:
    """Wrap an API handler: auth, request record, overlap detection and latency."""

    async def endpoint(request: Request) -> Response:
        itsm = _itsm(request)
        record = RequestRecord(
            method=request.method,
            path=request.url.path,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            action_key=request.headers.get(ACTION_HEADER),
            started=time.monotonic(),
        )
        if not itsm._authorized(request):
            itsm.requests.append(record)
            record.ended = time.monotonic()
            record.status_code = 401
            return _unauthorized()
        itsm._enter(record)
        try:
            if itsm.latency > 0:
                await asyncio.sleep(itsm.latency)
            response = await handler(request)
            record.status_code = response.status_code
            return response
        finally:
            itsm._leave(record)

    return endpoint


def _control(handler: Handler) -> Handler:
    """Wrap a control/inspection handler: auth only."""

    async def endpoint(request: Request) -> Response:
        if not _itsm(request)._authorized(request):
            return _unauthorized()
        return await handler(request)

    return endpoint


# -- API routes ------------------------------------------------------------------------------


async def _create_ticket(request: Request) -> Response:
    itsm = _itsm(request)
    itsm.create_calls += 1
    if itsm.create_calls <= itsm.fail_create_times:
        return _error("ITSM unavailable", code=500, status_code=500)
    if itsm.create_calls <= itsm.fail_create_times + itsm.envelope_error_times:
        return _error("service_id invalid", code=9999)
    body = await _json_object(request)
    if isinstance(body, JSONResponse):
        return body
    fields = _validated_fields(body)
    if isinstance(fields, JSONResponse):
        return fields
    extra = {k: v for k, v in body.items() if k != "fields"}
    ticket, _ = itsm.create(
        fields, extra=extra, idempotency_key=request.headers.get(IDEMPOTENCY_HEADER)
    )
    return _envelope(
        {"sn": ticket.sn, "id": ticket.id, "ticket_url": _ticket_url(request, ticket.sn)}
    )


async def _create_fast_approval_ticket(request: Request) -> Response:
    itsm = _itsm(request)
    body = await _json_object(request)
    if isinstance(body, JSONResponse):
        return body
    fields = _validated_fields(body)
    if isinstance(fields, JSONResponse):
        return fields
    raw = _field_value(fields, "APPROVER")
    if isinstance(raw, str):
        approvers = [a.strip() for a in raw.split(",") if a.strip()]
    elif isinstance(raw, list):
        approvers = [str(a) for a in raw]
    else:
        approvers = []
    if not approvers:
        return _error("fields must include a non-empty 'APPROVER'", code=400, status_code=400)
    extra = {k: v for k, v in body.items() if k != "fields"}
    ticket, _ = itsm.create(
        fields,
        extra=extra,
        kind="approval",
        approvers=approvers,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
    )
    return _envelope(
        {"sn": ticket.sn, "id": ticket.id, "ticket_url": _ticket_url(request, ticket.sn)}
    )


def _polled(request: Request) -> Ticket | JSONResponse:
    sn = request.query_params.get("sn")
    if not sn:
        return _error("query parameter 'sn' is required", code=400, status_code=400)
    ticket = _itsm(request).poll(sn)
    if ticket is None:
        return _error(f"ticket {sn} not found", code=404)
    return ticket


async def _get_ticket_status(request: Request) -> Response:
    ticket = _polled(request)
    if isinstance(ticket, JSONResponse):
        return ticket
    return _envelope(
        {
            "sn": ticket.sn,
            "current_status": ticket.current_status,
            "approve_result": ticket.approve_result,
            "ticket_url": _ticket_url(request, ticket.sn),
            "updated_by": UPDATED_BY,
        }
    )


async def _ticket_approve_result(request: Request) -> Response:
    ticket = _polled(request)
    if isinstance(ticket, JSONResponse):
        return ticket
    return _envelope(
        {
            "sn": ticket.sn,
            "current_status": ticket.current_status,
            "approve_result": ticket.approve_result,
            "updated_by": UPDATED_BY,
        }
    )


async def _operate_ticket(request: Request) -> Response:
    body = await _json_object(request)
    if isinstance(body, JSONResponse):
        return body
    sn = body.get("sn")
    action_type = body.get("action_type")
    if not isinstance(sn, str) or not sn:
        return _error("'sn' is required", code=400, status_code=400)
    if action_type not in _OPERATIONS:
        allowed = ", ".join(sorted(_OPERATIONS))
        return _error(f"'action_type' must be one of {allowed}", code=400, status_code=400)
    ticket = _itsm(request).tickets.get(sn)
    if ticket is None:
        return _error(f"ticket {sn} not found", code=404)
    if ticket.current_status != RUNNING:
        return _error(f"ticket {sn} is already {ticket.current_status}", code=409)
    ticket.current_status = _OPERATIONS[action_type]
    return _envelope({"sn": ticket.sn, "current_status": ticket.current_status})


# -- control / inspection routes ---------------------------------------------------------------


async def _stats(request: Request) -> Response:
    return _envelope(_itsm(request).stats())


async def _finish(request: Request) -> Response:
    sn = request.path_params["sn"]
    body = await _json_object(request)
    if isinstance(body, JSONResponse):
        return body
    approve = body.get("approve", True)
    status = body.get("status", "FINISHED")
    if not isinstance(approve, bool) or not isinstance(status, str):
        return _error(
            "'approve' must be a boolean and 'status' a string", code=400, status_code=400
        )
    ticket = _itsm(request).finish(sn, approve=approve, status=status)
    if ticket is None:
        return _error(f"ticket {sn} not found", code=404, status_code=404)
    return _envelope(ticket.as_dict())


async def _show_ticket(request: Request) -> Response:
    sn = request.path_params["sn"]
    ticket = _itsm(request).tickets.get(sn)
    if ticket is None:
        return _error(f"ticket {sn} not found", code=404, status_code=404)
    return _envelope(ticket.as_dict())


def create_app(itsm: FakeITSM | None = None) -> Starlette:
    """Build the Starlette app; the state is on ``app.state.itsm``."""
    routes = [
        Route("/create_ticket/", _api(_create_ticket), methods=["POST"]),
        Route("/get_ticket_status/", _api(_get_ticket_status), methods=["GET"]),
        Route("/operate_ticket/", _api(_operate_ticket), methods=["POST"]),
        Route(
            "/create_fast_approval_ticket/", _api(_create_fast_approval_ticket), methods=["POST"]
        ),
        Route("/ticket_approve_result/", _api(_ticket_approve_result), methods=["GET"]),
        Route("/_stats", _control(_stats), methods=["GET"]),
        Route("/_tickets/{sn}/finish", _control(_finish), methods=["POST"]),
        Route("/ticket/{sn}", _control(_show_ticket), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.itsm = itsm if itsm is not None else FakeITSM()
    return app


# -- running it --------------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the host process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_in_background(
    itsm: FakeITSM | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """Serve the fake on ``host:port`` (0 = a free port) in the running event loop.

    Returns ``(server, task, base_url)``; pass ``server`` and ``task`` to :func:`stop`.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (no 40 ms delayed-ACK
    # stall per response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(itsm), log_level="warning", access_log=False, lifespan="off")
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="fake-itsm")
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # re-raise the startup failure
            raise RuntimeError("fake ITSM server exited before it started")
        await asyncio.sleep(0.01)
    netloc = f"[{host}]" if family == socket.AF_INET6 else host
    return server, task, f"http://{netloc}:{bound_port}"


async def stop(server: uvicorn.Server, task: asyncio.Task[None], grace: float = 5.0) -> None:
    """Shut down a server started by :func:`serve_in_background`."""
    server.should_exit = True
    try:
        await asyncio.wait_for(asyncio.shield(task), grace)
    except TimeoutError:
        server.force_exit = True
        await task


def main(argv: list[str] | None = None) -> None:
    """Run the fake ITSM server in the foreground."""
    parser = argparse.ArgumentParser(prog="fake-itsm", description="Fake ITSM server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--finish-after-polls", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--reject", action="store_true", help="report approve_result false")
    parser.add_argument("--token", default=None, help="require this bearer token")
    args = parser.parse_args(argv)
    itsm = FakeITSM(
        finish_after_polls=args.finish_after_polls,
        latency=args.latency,
        approve=not args.reject,
        token=args.token,
    )
    uvicorn.run(create_app(itsm), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":  # pragma: no cover
    main()
