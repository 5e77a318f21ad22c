"""``heal serve`` (API, and the embedded worker) and ``heal worker`` (distributed runtime)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

import heal
from heal.cli.common import DatabaseUrl, make_settings, policy_problems, run, safe_url
from heal.cli.console import examples, fail, out, warn
from heal.observability import logging as heal_logging
from heal.settings import Settings

if TYPE_CHECKING:
    from heal.app import Heal

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="HEAL_CONFIG",
        show_envvar=True,
        help="the policy YAML [default: none: alerts are recorded, no action runs]",
        show_default=False,
    ),
]


def build(settings: Settings) -> Heal:
    """Load the policy and wire heal up; policy problems end the command with exit 2."""
    from heal.app import Heal
    from heal.policy.loader import PolicyError, load_policy
    from heal.policy.models import Policy

    try:
        policy = load_policy(settings.config) if settings.config else Policy()
        return Heal.build(settings, policy)
    except PolicyError as exc:
        fail(policy_problems(exc), code=2)
    except ValueError as exc:  # e.g. the procrastinate runtime on a SQLite database
        fail(f"invalid settings: {exc}", code=2)


SERVE_EXAMPLES = examples(
    "heal serve --config heal.yaml",
    "HEAL_API_TOKENS=sha256:... heal serve -c heal.yaml --host 0.0.0.0 --port 8080",
)
WORKER_EXAMPLES = examples(
    "HEAL_RUNTIME=procrastinate HEAL_DATABASE_URL=postgresql+psycopg://heal@db/heal "
    "heal worker -c heal.yaml --concurrency 32",
)


def serve(
    config: ConfigFile = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            envvar="HEAL_HOST",
            show_envvar=True,
            help="where to listen [default: 127.0.0.1]",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", envvar="HEAL_PORT", show_envvar=True, help="the port [default: 8080]"
        ),
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only: run no wakes (distributed runtime)")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Run heal: the HTTP API and, unless --no-worker, the worker that runs actions."""
    from heal.demo.runner import listen, url_of

    settings = make_settings(
        config=str(config) if config else None, host=host, port=port, database_url=database_url
    )
    heal_logging.configure(settings.log_level, settings.log_json)
    if not settings.config:
        warn("no policy (--config or HEAL_CONFIG): alerts are recorded, but no action runs")
    heal_app = build(settings)
    if not heal_app.token_hashes:
        warn(
            "no API token is configured (HEAL_API_TOKENS): every API call will be refused "
            "with 401.\nMake one with `heal token new` and set HEAL_API_TOKENS to its hash."
        )
    try:
        sock = listen(settings.host, settings.port)
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
    url = url_of(settings.host, sock.getsockname()[1])
    worker = "off (--no-worker)" if no_worker else f"{settings.runtime}, {settings.workers} slots"
    out().print(
        f"heal {heal.__version__} on [bold]{escape(url)}[/bold] (API docs: {escape(url)}/docs)\n"
        f"database {escape(safe_url(settings.database_url))}, worker {worker}. Ctrl+C stops."
    )
    try:
        run(_serve(heal_app, sock, worker=not no_worker), settings.database_url)
    finally:
        sock.close()
    out().print("heal stopped")


async def _serve(heal_app: Heal, sock: socket.socket, *, worker: bool) -> None:
    import uvicorn

    from heal.api.app import create_app
    from heal.demo.runner import GracefulServer

    settings = heal_app.settings
    try:
        # Started here rather than in the app's lifespan, so that an unusable database
        # is a message and an exit code, not a server that logs a traceback.
        await heal_app.start(worker=worker)
        config = uvicorn.Config(
            create_app(heal_app, manage_lifecycle=False),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
        )
        await GracefulServer(config).serve(sockets=[sock])
    finally:
        await heal_app.stop()


def worker(
    config: ConfigFile = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            max=1024,
            envvar="HEAL_WORKERS",
            show_envvar=True,
            help="wakes at once [default: 64]",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="serve Prometheus /metrics on this port, on HEAL_HOST [default: none]",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run wakes of the distributed runtime (HEAL_RUNTIME=procrastinate), no API."""
    from heal.demo.runner import url_of

    settings = make_settings(
        config=str(config) if config else None, workers=concurrency, database_url=database_url
    )
    if settings.runtime != "procrastinate":
        fail(
            "heal worker runs the distributed runtime: set HEAL_RUNTIME=procrastinate "
            "(with the embedded runtime, `heal serve` runs the wakes itself)",
            code=2,
        )
    heal_logging.configure(settings.log_level, settings.log_json)
    heal_app = build(settings)
    sock = _metrics_socket(settings.host, metrics_port)
    metrics = f", metrics on {url_of(settings.host, metrics_port)}/metrics" if metrics_port else ""
    out().print(
        f"heal worker: {settings.workers} wakes at once on {safe_url(settings.database_url)}"
        f"{escape(metrics)}. Ctrl+C stops."
    )
    try:
        run(_work(heal_app, sock), settings.database_url)
    finally:
        if sock is not None:
            sock.close()
    out().print("heal worker stopped")


def _metrics_socket(host: str, port: int | None) -> socket.socket | None:
    from heal.demo.runner import listen

    if port is None:
        return None
    try:
        return listen(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port} for metrics: {exc.strerror or exc}")


async def _work(heal_app: Heal, metrics_sock: socket.socket | None = None) -> None:
    from heal.observability.gauges import serving_metrics

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
            installed.append(sig)
    try:
        await heal_app.start(worker=True)
        async with serving_metrics(heal_app.db, metrics_sock):
            await stopping.wait()
    finally:
        await heal_app.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
