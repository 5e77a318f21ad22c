"""``heal demo``: heal and a fake ITSM in one process and one event loop.

The bundled ``policy.yaml`` opens a ticket in the fake ITSM for a ``CheckoutDown`` or
``DiskFull`` alert and polls it until it is finished (the fake finishes a ticket after
three polls). Everything stops cleanly on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from importlib import resources
from types import FrameType

import uvicorn
from pydantic import SecretStr

from heal.api.app import create_app
from heal.app import Heal
from heal.demo import itsm as fake_itsm
from heal.domain.approvals import Role
from heal.engine.engine import utcnow
from heal.policy.loader import load_policy_text
from heal.policy.models import Policy
from heal.settings import Settings, hash_token
from heal.store import users_repo

ITSM_PLACEHOLDER = "__ITSM_URL__"
DEMO_APPROVER = "demo"
DEMO_TOKEN = "demo-token"  # noqa: S105 - a published demo token, configured only by the demo
# The demo user's own token, to sign approvals as `demo` (service tokens never sign).
DEMO_APPROVER_TOKEN = "demo-approver-token"  # noqa: S105 - published, like DEMO_TOKEN
DEMO_SCOPES = "ingest+read"
FINISH_AFTER_POLLS = 3


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What the demo is listening on, for whoever prints the welcome."""

    api_url: str
    itsm_url: str
    database_url: str
    token: str | None  # None when HEAL_API_TOKENS was configured (the token is not known)


class GracefulServer(uvicorn.Server):
    """uvicorn that stops on SIGINT/SIGTERM and then returns normally.

    Plain uvicorn re-raises the signal once it has stopped, which would interrupt the
    clean-up that follows ``serve()`` (stopping heal's runtime, closing the database).
    A second Ctrl+C still forces the exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


class PortUnavailable(Exception):
    """The demo cannot listen on a port it needs (taken, or not allowed)."""

    def __init__(self, host: str, port: int, purpose: str, error: OSError) -> None:
        self.host, self.port, self.purpose = host, port, purpose
        if error.errno == errno.EADDRINUSE:
            reason = f"port {port} is already in use"
        else:
            reason = f"cannot listen on {host}:{port} ({error.strerror or error})"
        super().__init__(f"{reason} ({purpose})")


def listen(host: str, port: int) -> socket.socket:
    """A bound listening socket (raises OSError, e.g. when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def demo_policy(itsm_url: str) -> Policy:
    """The bundled demo policy, pointed at ``itsm_url``."""
    text = resources.files("heal.demo").joinpath("policy.yaml").read_text(encoding="utf-8")
    return load_policy_text(text.replace(ITSM_PLACEHOLDER, itsm_url), "heal/demo/policy.yaml")


def demo_settings(settings: Settings) -> tuple[Settings, str | None]:
    """``settings`` with the demo token when no API token is configured, and that token."""
    if settings.api_tokens:
        return settings, None
    # Only hashes are configured, the demo's too.
    entry = f"{hash_token(DEMO_TOKEN)}:{DEMO_SCOPES}"
    return settings.model_copy(update={"api_tokens": [SecretStr(entry)]}), DEMO_TOKEN


async def ensure_demo_approver(heal: Heal) -> None:
    """The user the tour approves as, with their token ``DEMO_APPROVER_TOKEN``; heal
    itself may not sign what it requested."""
    async with heal.db.write() as connection:
        user = await users_repo.by_name(connection, DEMO_APPROVER)
        if user is None:
            await users_repo.add(connection, DEMO_APPROVER, Role.APPROVER.label, [], utcnow())
            user = await users_repo.by_name(connection, DEMO_APPROVER)
            assert user is not None
        digest = hash_token(DEMO_APPROVER_TOKEN)
        if await users_repo.token_of(connection, digest) is None:
            await users_repo.add_token(connection, int(user["id"]), digest, "demo", utcnow())


async def run_demo(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    itsm_port: int = 8081,
    on_ready: Callable[[DemoInfo], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the fake ITSM and heal until a signal (or ``stop``), then shut both down.

    Raises PortUnavailable when a port is taken, and whatever heal's start raises (an
    unusable database) before anything is served.
    """
    settings, token = demo_settings(settings)
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise PortUnavailable(host, port, "heal's API, --port", exc) from exc
    port = sock.getsockname()[1]  # the real one when 0 asked for any free port
    try:
        itsm = fake_itsm.FakeITSM(finish_after_polls=FINISH_AFTER_POLLS)
        try:
            itsm_server, itsm_task, itsm_url = await fake_itsm.serve_in_background(
                itsm, host, itsm_port
            )
        except OSError as exc:
            raise PortUnavailable(host, itsm_port, "the fake ITSM, --itsm-port", exc) from exc
        try:
            heal = Heal.build(settings, demo_policy(itsm_url))
            await _serve(heal, sock, host, port, on_ready, stop, token, itsm_url)
        finally:
            await fake_itsm.stop(itsm_server, itsm_task)
    finally:
        sock.close()


async def _serve(
    heal: Heal,
    sock: socket.socket,
    host: str,
    port: int,
    on_ready: Callable[[DemoInfo], None] | None,
    stop: asyncio.Event | None,
    token: str | None,
    itsm_url: str,
) -> None:
    try:
        await heal.start(worker=True)
        await ensure_demo_approver(heal)
        config = uvicorn.Config(
            create_app(heal, manage_lifecycle=False),
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
        )
        server = GracefulServer(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="heal-demo")
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.01)
        if on_ready is not None:
            on_ready(DemoInfo(url_of(host, port), itsm_url, heal.settings.database_url, token))
        if stop is None:
            await serving
            return
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving
    finally:
        await heal.stop()
