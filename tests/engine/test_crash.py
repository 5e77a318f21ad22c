"""Kill heal with SIGKILL mid-work, start it again: every action finishes, no ticket twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import AUTH, am_alert, am_payload, policy_text
from processes import HealProcess

from heal.demo.itsm import FakeITSM, serve_in_background, stop

pytestmark = pytest.mark.slow
ACTIONS = 24


@pytest.fixture
async def slow_itsm() -> AsyncIterator[tuple[FakeITSM, str]]:
    # Latency keeps requests in flight, so the kill lands mid-request as well as mid-poll.
    fake = FakeITSM(finish_after_polls=4, latency=0.05)
    server, task, url = await serve_in_background(fake)
    yield fake, url
    await stop(server, task)


async def _action_statuses(client: httpx.AsyncClient, url: str) -> list[str]:
    page = (
        await client.get(f"{url}/api/v1/incidents", params={"limit": 500}, headers=AUTH)
    ).json()["items"]
    return [status for i in page for status, n in i["actions"].items() for _ in range(n)]


async def _wait_for(predicate: Any, timeout: float) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_sigkill_mid_poll_then_restart_completes_everything_once(
    tmp_path: Path, slow_itsm: tuple[FakeITSM, str]
) -> None:
    fake, itsm_url = slow_itsm
    config = tmp_path / "heal.yaml"
    config.write_text(policy_text(itsm_url, **{"schedule_timedelta: 2": "schedule_timedelta: 0.3"}))
    database_url = f"sqlite+aiosqlite:///{tmp_path}/heal.db"
    log = tmp_path / "heal.log"

    env = {"HEAL_DATABASE_URL": database_url}
    first = HealProcess(["serve", "--config", str(config)], log, env)
    async with httpx.AsyncClient(timeout=10) as client:
        try:
            await first.ready(client)
            alerts = [am_alert(service=f"svc-{i}") for i in range(ACTIONS)]
            response = await client.post(
                f"{first.url}/api/v1/alerts/alertmanager", json=am_payload(*alerts), headers=AUTH
            )
            assert response.status_code == 202
            assert response.json()["actions_created"] == ACTIONS
            # Kill once tickets exist and polls are under way, with more requests in flight.
            await _wait_for(lambda: len(fake.requests_to("/get_ticket_status/")) >= 10, 30)
        finally:
            first.kill()
        in_flight_at_kill = await _action_statuses_offline(database_url)
        assert "running" in in_flight_at_kill or "received" in in_flight_at_kill

        second = HealProcess(["serve", "--config", str(config)], log, env)
        try:
            await second.ready(client)
            statuses: list[str] = []
            for _ in range(600):
                statuses = await _action_statuses(client, second.url)
                if len(statuses) == ACTIONS and all(s == "success" for s in statuses):
                    break
                await asyncio.sleep(0.1)
        finally:
            second.terminate()

    assert statuses == ["success"] * ACTIONS, log.read_text()[-3000:]
    assert fake.tickets_created == ACTIONS
    titles = sorted(t.title for t in fake.tickets.values())
    assert titles == sorted(f"CheckoutDown on svc-{i}" for i in range(ACTIONS))
    assert fake.overlaps == 0


async def _action_statuses_offline(database_url: str) -> list[str]:
    from sqlalchemy import select

    from heal.store.db import Database
    from heal.store.tables import actions

    db = Database(database_url)
    try:
        async with db.read() as connection:
            return list((await connection.execute(select(actions.c.status))).scalars())
    finally:
        await db.dispose()
