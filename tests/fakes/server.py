"""Serve a fake API over real TCP on 127.0.0.1, inside the test's event loop; record calls."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import ASGIApp


@dataclass
class Call:
    method: str
    payload: dict[str, Any]


@dataclass
class Recorder:
    """Every API call a fake received, in order."""

    calls: list[Call] = field(default_factory=list, kw_only=True)

    def sent(self, method: str) -> list[dict[str, Any]]:
        return [c.payload for c in self.calls if c.method == method]


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Yields the base URL while ``app`` serves on a free port."""
    # IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
