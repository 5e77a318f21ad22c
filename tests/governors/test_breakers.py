"""Circuit breakers: K failures of one action on one target open it, it blocks new actions
there, and it closes after its cooldown or when an operator resets it (API, CLI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from click.testing import Result
from conftest import HealFactory
from governed import FakeTarget, crash, governed, install, messages, row, run_all
from helpers import AUTH, Clock
from sqlalchemy import insert
from typer.testing import CliRunner

from heal.api.app import create_app
from heal.app import Heal
from heal.cli.main import app as cli_app
from heal.engine.engine import utcnow
from heal.store import timeline_repo
from heal.store.tables import verifications

pytestmark = pytest.mark.usefixtures("backend")

BREAKER = "breaker: {failures: 2, within: 3600, cooldown: 1800}"


async def _fail_twice(make_heal: HealFactory, clock: Clock) -> tuple[Heal, FakeTarget]:
    heal = await make_heal(governed(BREAKER), clock=clock)
    plugin = FakeTarget(run_for=0)
    plugin.fail = True
    install([heal], plugin)
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    assert [r["status"] for r in await run_all([heal], clock)] == ["failure", "failure"]
    plugin.fail = False
    return heal, plugin


async def _breaker_notes(heal: Heal, incident_id: int) -> list[tuple[str, int | None, str]]:
    async with heal.db.read() as connection:
        entries = await timeline_repo.for_incident(connection, incident_id)
    found = [e for e in entries if e["kind"].startswith("breaker.")]
    return [(e["kind"], e["action_id"], e["message"]) for e in found]


@pytest.fixture
async def client(make_heal: HealFactory, clock: Clock) -> AsyncIterator[tuple[Any, Heal]]:
    heal, _ = await _fail_twice(make_heal, clock)
    app = create_app(heal, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://heal", headers=AUTH) as c:
        yield c, heal


async def test_failures_open_the_breaker_and_it_blocks_the_action_on_its_target(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, plugin = await _fail_twice(make_heal, clock)
    clock.advance(60)
    await heal.ingest.ingest([crash("checkout-2"), crash("cart-0", deployment="cart")])

    blocked = await row(heal, 3)
    assert (blocked["status"], blocked["failure_type"]) == ("blocked", "blocked")
    assert blocked["message"].startswith(
        "blocked: circuit breaker #1 of 'restart' on shop/checkout is open: 2 failure(s)"
    )
    assert "heal breakers reset 1" in blocked["message"]
    assert any("action not run: blocked: circuit breaker" in m for m in await messages(heal, 3))
    assert (await row(heal, 4))["status"] == "received"  # another target is not blocked
    await run_all([heal], clock)
    assert plugin.runs == [1, 2, 4]


async def test_the_breaker_closes_after_its_cooldown(make_heal: HealFactory, clock: Clock) -> None:
    heal, _ = await _fail_twice(make_heal, clock)
    clock.advance(1799)
    await heal.ingest.ingest([crash("checkout-2")])
    clock.advance(2)
    await heal.ingest.ingest([crash("checkout-3")])
    assert [(await row(heal, i))["status"] for i in (3, 4)] == ["blocked", "received"]


async def test_one_failure_is_not_enough(make_heal: HealFactory, clock: Clock) -> None:
    heal = await make_heal(governed(BREAKER), clock=clock)
    plugin = FakeTarget(run_for=0)
    plugin.fail = True
    install([heal], plugin)
    await heal.ingest.ingest([crash("checkout-0")])
    await run_all([heal], clock)
    await heal.ingest.ingest([crash("checkout-1")])
    assert (await row(heal, 2))["status"] == "received"


async def test_an_ineffective_outcome_counts_as_a_failure(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed(BREAKER), clock=clock)
    plugin = FakeTarget(run_for=0)
    install([heal], plugin)
    await heal.ingest.ingest([crash("checkout-0")])
    await run_all([heal], clock)  # succeeded ...
    async with heal.db.write() as connection:  # ... and verification found it ineffective
        await connection.execute(
            insert(verifications).values(
                action_id=1,
                incident_id=1,
                rule="restart-crashing",
                action_name="restart",
                outcome="ineffective",
                on_ineffective="none",
                quiet_for=0,
                started_at=clock.now,
                within_at=clock.now,
                outcome_at=clock.now,
                evidence={},
            )
        )
    plugin.fail = True
    await heal.ingest.ingest([crash("checkout-1")])
    await run_all([heal], clock)  # one failure and one ineffective: open
    await heal.ingest.ingest([crash("checkout-2")])
    assert (await row(heal, 3))["status"] == "blocked"


async def test_the_api_lists_and_resets_a_breaker(
    client: tuple[httpx.AsyncClient, Heal], clock: Clock
) -> None:
    http, heal = client
    listed = (await http.get("/api/v1/breakers")).json()
    assert listed == [
        {
            "id": 1,
            "action": "restart",
            "target": "shop/checkout",
            "open": True,
            "failures": 2,
            "opened_at": clock.now.isoformat(),
            "closes_at": (clock.now + timedelta(seconds=1800)).isoformat(),
            "reset_by": None,
            "reset_at": None,
        }
    ]
    clock.advance(10)
    reset = await http.post("/api/v1/breakers/1/reset")
    assert reset.status_code == 200
    assert reset.json()["open"] is False
    assert reset.json()["reset_by"]

    await heal.ingest.ingest([crash("checkout-2")])
    assert (await row(heal, 3))["status"] == "received"  # failures before the reset are gone
    assert (await http.post("/api/v1/breakers/9/reset")).status_code == 404


async def test_the_opening_and_the_reset_are_on_the_timelines_of_the_incidents_that_tripped_it(
    client: tuple[httpx.AsyncClient, Heal], clock: Clock
) -> None:
    http, heal = client
    opened = (
        "circuit breaker #1 of 'restart' on shop/checkout opened: 2 failure(s) within 3600 s "
        "(#1, #2); new actions there are blocked until "
        f"{clock.now + timedelta(seconds=1800):%Y-%m-%d %H:%M:%S} UTC or a reset "
        "(heal breakers reset 1)"
    )
    # Each incident had one of the two failed actions; the second failure opened it.
    assert await _breaker_notes(heal, 1) == [("breaker.opened", 1, opened)]
    assert await _breaker_notes(heal, 2) == [("breaker.opened", 2, opened)]

    assert (await http.post("/api/v1/breakers/1/reset")).status_code == 200

    who = (await http.get("/api/v1/breakers")).json()[0]["reset_by"]
    reset = (
        f"circuit breaker #1 of 'restart' on shop/checkout reset by {who}: new actions there "
        "may run again"
    )
    for incident_id in (1, 2):
        assert (await _breaker_notes(heal, incident_id))[-1] == (
            "breaker.reset",
            incident_id,
            reset,
        )


async def test_resetting_needs_the_operate_scope(
    client: tuple[httpx.AsyncClient, Heal], clock: Clock
) -> None:
    http, _ = client
    response = await http.post("/api/v1/breakers/1/reset", headers={"Authorization": "Bearer x"})
    assert response.status_code == 401


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_cli_lists_and_resets_a_breaker(
    make_heal: HealFactory,
    clock: Clock,
    backend: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.now = utcnow()  # the CLI judges "open" by the real clock
    heal, _ = await _fail_twice(make_heal, clock)
    for name in ("HEAL_DATABASE_URL", "HEAL_CONFIG", "HEAL_URL", "HEAL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # no wrapped table cells
    url = backend[0]

    async def heal_cli(*args: str) -> Result:  # the CLI runs its own event loop
        return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args))

    listed = await heal_cli("breakers", "list", "--json", "--database-url", url)
    assert listed.exit_code == 0, listed.output
    assert '"target": "shop/checkout"' in listed.output
    table = await heal_cli("breakers", "list", "--database-url", url)
    assert "restart" in table.output
    assert "shop/checkout" in table.output

    reset = await heal_cli("breakers", "reset", "1", "--database-url", url)
    assert reset.exit_code == 0, reset.output
    assert "breaker 1 reset" in reset.output
    closed = await heal_cli("breakers", "list", "--open", "--database-url", url)
    assert "no open breakers" in closed.output
    async with heal.db.read() as connection:
        said = [e["message"] for e in await timeline_repo.for_incident(connection, 1)]
    assert any(
        m.startswith("circuit breaker #1 of 'restart' on shop/checkout reset by cli:") for m in said
    )
    missing = await heal_cli("breakers", "reset", "7", "--database-url", url)
    assert missing.exit_code == 1
    assert "breaker 7 not found" in missing.output
