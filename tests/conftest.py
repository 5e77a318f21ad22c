"""Shared fixtures: databases (SQLite and a throwaway PostgreSQL), the fake ITSM, a clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import psycopg
import pytest
from helpers import AUTH, SERVICE_TOKENS, Clock, policy_text
from sqlalchemy import text

from heal.api.app import create_app
from heal.app import Heal
from heal.demo.itsm import FakeITSM, serve_in_background, stop
from heal.policy import load_policy_text
from heal.settings import Settings
from heal.store import migrate, tables

# Tests never assert wall-clock time: Hypothesis's deadline and "too slow" health check
# would, and they fail on a loaded two-core machine for no fault of the code.
hypothesis.settings.register_profile(
    "heal",
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("heal")

ADMIN_URL = os.environ.get(
    "HEAL_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _postgres_available() -> bool:
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test session, dropped at the end."""
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} (CI needs it)")
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL}")
    name = f"heal_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """Another, empty database beside the session's, dropped after the test."""
    name = f"heal_fresh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("procrastinate", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(database URL, runtime): the embedded runtime on SQLite and on PostgreSQL, and the
    distributed runtime (procrastinate) on PostgreSQL. Every engine test runs on each."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/heal.db", "embedded"
    url: str = request.getfixturevalue("postgres_url")
    return url, "embedded" if request.param == "postgres" else "procrastinate"


@pytest.fixture
def database_url(backend: tuple[str, str]) -> str:
    return backend[0]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/heal.db"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def itsm() -> AsyncIterator[tuple[FakeITSM, str]]:
    fake = FakeITSM(finish_after_polls=2)
    server, task, url = await serve_in_background(fake)
    yield fake, url
    await stop(server, task)


HealFactory = Callable[..., Any]


@pytest.fixture
async def make_heal(
    backend: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[HealFactory]:
    """Builds a migrated, empty heal on the parametrised database; runtime not started."""
    built: list[Heal] = []
    database_url, runtime = backend

    async def factory(
        policy: str,
        *,
        clock: Clock | None = None,
        worker: bool = False,
        environ: dict[str, str] | None = None,
        **settings: Any,
    ) -> Heal:
        monkeypatch.setenv("HEAL_TEST_ITSM_TOKEN", "token-the-fake-does-not-check")
        for name, value in (environ or {}).items():
            monkeypatch.setenv(name, value)
        heal = Heal.build(
            Settings(
                **{
                    "database_url": database_url,
                    "runtime": runtime,
                    "api_tokens": SERVICE_TOKENS,
                    "workers": 8,
                    **settings,
                }
            ),
            load_policy_text(policy),
        )
        await migrate.upgrade(heal.db)
        async with heal.db.write() as connection:
            # Every table heal owns, emptied between tests, ids starting again at 1.
            if heal.db.is_sqlite:
                for table in reversed(tables.metadata.sorted_tables):
                    await connection.execute(table.delete())
            else:
                names = ", ".join(t.name for t in tables.metadata.sorted_tables)
                await connection.execute(
                    text(f"TRUNCATE {names}, procrastinate_jobs RESTART IDENTITY CASCADE")
                )
        if clock is not None:
            heal.engine.clock = clock
            heal.ingest.clock = clock
        await heal.start(worker=worker)
        built.append(heal)
        return heal

    yield factory
    for heal in built:
        await heal.stop()


@pytest.fixture
async def api(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> AsyncIterator[tuple[httpx.AsyncClient, Heal]]:
    """An API client on a heal whose runtime is not started (tests drive wakes)."""
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    app = create_app(heal, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://heal", headers=AUTH
    ) as client:
        yield client, heal
