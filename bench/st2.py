"""The tests' fake st2 API (``tests/fakes/st2.py``: st2api's shapes) in a process of its own."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

import uvicorn

from bench._proc import ROOT, run

sys.path.insert(0, str(ROOT / "tests"))  # the fake lives with the tests that define it

from fakes.st2 import FakeSt2, create_app


async def serve(args: argparse.Namespace) -> None:
    fake = FakeSt2(api_keys={args.api_key})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(fake), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit("fake st2 exited before it started")
        await asyncio.sleep(0.02)
    Path(args.port_file).write_text(str(sock.getsockname()[1]))
    await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.st2")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    run(serve(args))


if __name__ == "__main__":
    main()
