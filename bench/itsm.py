"""The fake ITSM (``heal.demo.itsm``) in a process of its own, with counters for the benchmarks.

Besides the fake's own routes it answers ``GET /_bench/counts`` (requests per API path, tickets
created) and ``GET /_bench/tickets`` (``[title, created_at epoch seconds]`` per ticket). The
fake's request log is trimmed as it goes so a long run does not grow without bound.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections import Counter
from datetime import datetime
from pathlib import Path

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bench._proc import run
from heal.demo.itsm import FakeITSM, create_app

_TRIM_AT = 10_000


class Counting:
    """Counts requests per path (cheap: no body is read) and trims the fake's request log."""

    def __init__(self, app: ASGIApp, itsm: FakeITSM) -> None:
        self.app = app
        self.itsm = itsm
        self.counts: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.counts[scope["path"]] += 1
            if len(self.itsm.requests) > _TRIM_AT:
                del self.itsm.requests[:]
        await self.app(scope, receive, send)


def build(itsm: FakeITSM) -> Counting:
    app = create_app(itsm)
    counting = Counting(app, itsm)

    async def counts(_request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "create": counting.counts["/create_ticket/"],
                "poll": counting.counts["/get_ticket_status/"],
                "tickets": len(itsm.tickets),
                "overlaps": itsm.overlaps,
            }
        )

    async def tickets(_request: Request) -> JSONResponse:
        return JSONResponse(
            [
                [t.title, datetime.fromisoformat(t.created_at).timestamp()]
                for t in itsm.tickets.values()
            ]
        )

    app.router.routes.append(Route("/_bench/counts", counts, methods=["GET"]))
    app.router.routes.append(Route("/_bench/tickets", tickets, methods=["GET"]))
    return counting


async def serve(args: argparse.Namespace) -> None:
    itsm = FakeITSM(finish_after_polls=args.finish_after_polls, latency=args.latency)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see run()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        build(itsm), log_level="warning", access_log=False, lifespan="off", backlog=2048
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit("fake ITSM exited before it started")
        await asyncio.sleep(0.02)
    Path(args.port_file).write_text(str(sock.getsockname()[1]))
    await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.itsm")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--finish-after-polls", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
