"""heal's API (and its embedded worker) under uvicorn, for the benchmarks.

``python -m bench.server --database-url URL --policy FILE --port-file F`` binds a free port on
127.0.0.1, writes it to F once serving, and runs until SIGINT/SIGTERM. The API token comes
from ``HEAL_API_TOKENS`` like in production.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path

import uvicorn

from bench import experiments
from bench._proc import run
from heal.api.app import create_app
from heal.app import Heal
from heal.policy import load_policy_text
from heal.settings import Settings


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see run()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def serve(args: argparse.Namespace) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=args.database_url,
        workers=args.workers,
        max_pending_writes=args.max_pending_writes,
    )
    policy = load_policy_text(Path(args.policy).read_text(), args.policy)
    if args.experiment:
        experiments.apply(args.experiment.split(","))
    heal = Heal.build(settings, policy)
    sock = _bind()
    config = uvicorn.Config(
        create_app(heal), log_level="warning", access_log=False, lifespan="on", backlog=2048
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit("heal exited before it started")
        await asyncio.sleep(0.02)
    Path(args.port_file).write_text(str(sock.getsockname()[1]))
    await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.server")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--policy", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--workers", type=int, default=Settings.model_fields["workers"].default)
    parser.add_argument(
        "--max-pending-writes",
        type=int,
        default=Settings.model_fields["max_pending_writes"].default,
    )
    parser.add_argument("--experiment", default="", help="see bench/experiments.py")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
