"""The distributed runtime as deployed: one API process, three workers, one database."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from helpers import AUTH, am_alert, am_payload, policy_text
from processes import HealProcess
from sqlalchemy import func, select, text

from heal.demo.itsm import FakeITSM, serve_in_background, stop
from heal.store.db import Database
from heal.store.tables import actions

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(420)]
PG_CTLCLUSTER = shutil.which("pg_ctlcluster")
ACTIONS = 1000
WORKERS = 3


@pytest.fixture
async def fake_itsm() -> AsyncIterator[tuple[FakeITSM, str]]:
    fake = FakeITSM(finish_after_polls=3, latency=0.002)
    server, task, url = await serve_in_background(fake)
    yield fake, url
    await stop(server, task)


async def _statuses(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    try:
        async with db.read() as connection:
            rows = await connection.execute(
                select(actions.c.status, func.count()).group_by(actions.c.status)
            )
            return {status: count for status, count in rows}
    finally:
        await db.dispose()


async def _failed_wakes(database_url: str) -> int:
    db = Database(database_url)
    try:
        async with db.read() as connection:
            result = await connection.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs "
                    "WHERE task_name = 'heal.wake' AND status = 'failed'"
                )
            )
            return int(result.scalar_one())
    finally:
        await db.dispose()


async def _wait_all_terminal(database_url: str, total: int, timeout: float) -> dict[str, int]:
    statuses: dict[str, int] = {}
    for _ in range(int(timeout)):
        statuses = await _statuses(database_url)
        if statuses.get("success", 0) + statuses.get("failure", 0) == total:
            return statuses
        await asyncio.sleep(1)
    return statuses


def _setup(tmp_path: Path, itsm_url: str, database_url: str) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "heal.yaml"
    config.write_text(policy_text(itsm_url, **{"schedule_timedelta: 2": "schedule_timedelta: 1"}))
    env = {
        "HEAL_DATABASE_URL": database_url,
        "HEAL_RUNTIME": "procrastinate",
        "HEAL_STALLED_AFTER": "4",
        "HEAL_SWEEP_INTERVAL": "2",
        "HEAL_CONFIG": str(config),
        # Four processes share the server's 100 connections with the tests themselves.
        "HEAL_DB_POOL_SIZE": "3",
    }
    return config, env


async def _send(client: httpx.AsyncClient, url: str, count: int, batch: int = 50) -> None:
    for start in range(0, count, batch):
        alerts = [am_alert(service=f"svc-{i}") for i in range(start, start + batch)]
        response = await client.post(
            f"{url}/api/v1/alerts/alertmanager", json=am_payload(*alerts), headers=AUTH
        )
        assert response.status_code == 202, response.text


async def test_three_workers_one_killed_every_action_once(
    tmp_path: Path, fake_itsm: tuple[FakeITSM, str], fresh_postgres_url: str
) -> None:
    fake, itsm_url = fake_itsm
    _, env = _setup(tmp_path, itsm_url, fresh_postgres_url)
    log = tmp_path / "heal.log"
    api = HealProcess(["serve", "--no-worker"], log, env)
    workers = [HealProcess(["worker", "--concurrency", "32"], log, env) for _ in range(WORKERS)]
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await api.ready(client)
            await _send(client, api.url, ACTIONS)
            for _ in range(600):  # kill a worker while tickets are being created and polled
                if fake.tickets_created >= ACTIONS // 3:
                    break
                await asyncio.sleep(0.1)
            workers[0].kill()
            statuses = await _wait_all_terminal(fresh_postgres_url, ACTIONS, timeout=240)
            failed = await _failed_wakes(fresh_postgres_url)
    finally:
        for process in [api, *workers]:
            process.terminate()

    assert statuses == {"success": ACTIONS}, log.read_text()[-4000:]
    assert failed == 0  # the killed worker's wakes were re-run or cleaned up, none left failed
    assert fake.tickets_created == ACTIONS  # no ticket twice, killed worker or not
    assert fake.overlaps == 0  # never two requests for one action at once


@pytest.mark.skipif(PG_CTLCLUSTER is None, reason="needs pg_ctlcluster (Debian's PostgreSQL)")
async def test_postgres_restart_mid_run_loses_nothing(
    tmp_path: Path, fake_itsm: tuple[FakeITSM, str], fresh_postgres_url: str
) -> None:
    fake, itsm_url = fake_itsm
    _, env = _setup(tmp_path, itsm_url, fresh_postgres_url)
    log = tmp_path / "heal.log"
    api = HealProcess(["serve", "--no-worker"], log, env)
    worker = HealProcess(["worker", "--concurrency", "16"], log, env)
    total = 100
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await api.ready(client)
            await _send(client, api.url, total // 2)
            for _ in range(300):
                if fake.tickets_created >= 10:
                    break
                await asyncio.sleep(0.1)
            version = next(Path("/etc/postgresql").iterdir()).name
            subprocess.run(
                [str(PG_CTLCLUSTER), "--skip-systemctl-redirect", version, "main", "restart"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            # The API reconnects on its own: alerts sent after the restart are accepted
            # (a 503 while the database comes back is retried, as Alertmanager would).
            for start in range(total // 2, total, 50):
                alerts = [am_alert(service=f"svc-{i}") for i in range(start, start + 50)]
                for _ in range(60):
                    response = await client.post(
                        f"{api.url}/api/v1/alerts/alertmanager",
                        json=am_payload(*alerts),
                        headers=AUTH,
                    )
                    if response.status_code == 202:
                        break
                    assert response.status_code == 503, response.text
                    await asyncio.sleep(1)
                assert response.status_code == 202
            statuses = await _wait_all_terminal(fresh_postgres_url, total, timeout=180)
    finally:
        api.terminate()
        worker.terminate()
    assert statuses == {"success": total}, log.read_text()[-4000:]
    assert fake.tickets_created == total
