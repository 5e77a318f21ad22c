"""Helpers for the CLI tests (plain functions; fixtures live in each test module)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from heal.app import Heal
from heal.cli.main import app
from heal.demo.runner import demo_policy
from heal.domain.alerts import Alert
from heal.settings import Settings

# Nothing from the developer's environment may leak into a test.
HEAL_VARIABLES = (
    "HEAL_API_TOKENS",
    "HEAL_CONFIG",
    "HEAL_DATABASE_URL",
    "HEAL_RUNTIME",
    "HEAL_TOKEN",
    "HEAL_URL",
    "HEAL_HOST",
    "HEAL_PORT",
)


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A clean environment, a wide terminal (no wrapped cells), and a cwd of our own."""
    for name in HEAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)


def sqlite_url(tmp_path: Path, name: str = "heal.db") -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/{name}"


def heal_cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def populate(database_url: str, alerts: list[Alert]) -> None:
    """Ingest ``alerts`` into a migrated database with the demo policy; no action runs."""

    async def work() -> None:
        heal = Heal.build(Settings(database_url=database_url), demo_policy("http://127.0.0.1:9"))
        await heal.start(worker=False)
        try:
            await heal.ingest.ingest(alerts)
        finally:
            await heal.stop()

    asyncio.run(work())
