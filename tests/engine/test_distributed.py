"""What only the distributed runtime promises: wakes are jobs that commit with the state."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest
from conftest import HealFactory
from helpers import Clock, PluginStub, alert, policy_text
from procrastinate.jobs import Job
from procrastinate.periodic import PeriodicDeferrer
from pydantic import ValidationError
from sqlalchemy import text
from structlog.testing import capture_logs

from heal.demo.itsm import FakeITSM
from heal.engine.interfaces import NodeCall, NodeResult
from heal.runtime.distributed import QUEUE, ProcrastinateRuntime, action_lock, conninfo
from heal.settings import Settings
from heal.store import actions_repo, timeline_repo
from heal.store.db import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
def backend(postgres_url: str) -> tuple[str, str]:
    return postgres_url, "procrastinate"


async def _jobs(heal: Any) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        result = await connection.execute(
            text(
                "SELECT args, status, lock, queueing_lock, scheduled_at FROM procrastinate_jobs "
                "WHERE task_name = 'heal.wake' ORDER BY id"
            )
        )
        return [dict(row._mapping) for row in result]


async def test_each_new_action_gets_exactly_one_waiting_wake(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    report = await heal.ingest.ingest([alert(service=f"s{i}") for i in range(3)])
    jobs = await _jobs(heal)
    assert len(jobs) == report.actions_created == 3
    for job in jobs:
        action_id = job["args"]["action_id"]
        assert job["args"]["version"] == 0
        assert job["status"] == "todo"
        assert job["lock"] == job["queueing_lock"] == action_lock(action_id)
        assert job["scheduled_at"] == clock.now


async def test_a_rolled_back_state_change_leaves_no_wake_behind(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)

    class Boom(Exception):
        pass

    async def schedule_then_fail() -> None:
        async with heal.db.write() as connection:
            await heal.runtime.schedule(connection, 12345, 0, clock.now)
            raise Boom

    with pytest.raises(Boom):
        await schedule_then_fail()
    assert await _jobs(heal) == []


async def test_a_new_wake_replaces_the_waiting_one(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    await heal.ingest.ingest([alert()])
    (job,) = await _jobs(heal)
    action_id = job["args"]["action_id"]
    await heal.engine.wake(action_id, 0)  # creates the ticket, schedules the first poll
    jobs = [j for j in await _jobs(heal) if j["status"] == "todo"]
    assert [j["args"]["version"] for j in jobs] == [1]


async def test_cancel_racing_a_wake_has_exactly_one_outcome(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    rng = random.Random(7)

    class Jittery(PluginStub):
        type = "http"

        async def run_node(self, call: NodeCall) -> NodeResult:
            await asyncio.sleep(rng.random() * 0.01)
            if call.node.function == "create_task":
                return NodeResult(outputs={"sn": "T"})
            return NodeResult(outputs={"current_status": "FINISHED", "approve_result": True})

    heal.engine.plugins["http"] = Jittery()
    trials = 30
    report = await heal.ingest.ingest([alert(service=f"s{i}") for i in range(trials)])
    assert report.actions_created == trials
    outcomes: dict[str, int] = {}
    for action_id in range(1, trials + 1):

        async def wake_until_done(action_id: int = action_id) -> None:
            for _ in range(5):
                async with heal.db.read() as connection:
                    row = await actions_repo.load(connection, action_id)
                assert row is not None
                clock.now = max(clock.now, row["next_wake_at"] or clock.now)
                await heal.engine.wake(action_id, row["version"])

        async def cancel_later(action_id: int = action_id) -> None:
            await asyncio.sleep(rng.random() * 0.02)
            await heal.engine.cancel(action_id, who="racer")

        await asyncio.gather(wake_until_done(), cancel_later())
        async with heal.db.read() as connection:
            row = await actions_repo.load(connection, action_id)
            events = await timeline_repo.for_action(connection, action_id)
        assert row is not None
        finals = [
            e
            for e in events
            if e["kind"] == "action.status" and e["data"]["status"] in ("success", "failure")
        ]
        assert len(finals) == 1, finals  # exactly one terminal transition was recorded
        assert finals[0]["data"]["status"] == row["status"]
        outcomes[row["status"]] = outcomes.get(row["status"], 0) + 1
    assert sum(outcomes.values()) == trials


def test_procrastinate_needs_postgresql() -> None:
    with pytest.raises(ValueError, match="needs a PostgreSQL"):
        conninfo("sqlite+aiosqlite:///x.db")
    assert conninfo("postgresql+psycopg://u:p@h:5432/d") == "postgresql://u:p@h:5432/d"


async def test_sweeper_gives_a_lost_wake_back(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    await heal.ingest.ingest([alert()])
    async with heal.db.write() as connection:
        await connection.execute(text("DELETE FROM procrastinate_jobs"))
        await connection.execute(
            text("UPDATE actions SET next_wake_at = now() - interval '1 minute'")
        )
    assert isinstance(heal.runtime, ProcrastinateRuntime)
    assert await heal.runtime.sweep() == 1
    assert [j["status"] for j in await _jobs(heal)] == ["todo"]
    assert await heal.runtime.sweep() == 0  # idempotent


def _fire_times(
    runtime: ProcrastinateRuntime, periodic_id: str, start: int, seconds: int
) -> list[int]:
    """When procrastinate's own deferrer, polled each second, defers the periodic task."""
    deferrer = PeriodicDeferrer(runtime.app.periodic_registry)
    fired: list[int] = []
    for now in range(start, start + seconds):
        fired += [
            timestamp
            for task, timestamp in deferrer.get_previous_tasks(at=now)
            if task.periodic_id == periodic_id
        ]
    return fired


@pytest.mark.parametrize("interval", [30, 2])
@pytest.mark.parametrize("periodic_id", ["sweep", "retry-stalled"])
async def test_recovery_runs_every_sweep_interval(periodic_id: str, interval: int) -> None:
    db = Database("postgresql+psycopg://heal@127.0.0.1/never-connected")
    try:
        runtime = ProcrastinateRuntime(db, sweep_interval=interval)
        fired = _fire_times(runtime, periodic_id, start=1_800_000_007, seconds=10 * 60)
    finally:
        await db.dispose()
    gaps = {later - earlier for earlier, later in itertools.pairwise(fired)}
    assert gaps == {interval}
    assert len(fired) >= 10 * 60 // interval


def test_a_sweep_interval_that_does_not_divide_a_minute_is_refused() -> None:
    with pytest.raises(ValidationError, match="must divide 60"):
        Settings(sweep_interval=45)


async def _worker_dies_holding_a_wake(heal: Any, clock: Clock) -> ProcrastinateRuntime:
    """A worker fetched the action's wake and was SIGKILLed: no heartbeat, job ``doing``."""
    runtime = heal.runtime
    assert isinstance(runtime, ProcrastinateRuntime)
    manager = runtime.app.job_manager
    worker_id = await manager.register_worker()
    job: Job | None = await manager.fetch_job(queues=[QUEUE], worker_id=worker_id)
    assert job is not None
    runtime.stalled_after = 0  # its last heartbeat is already too old
    runtime.clock = clock
    return runtime


async def _recoveries(heal: Any, action_id: int) -> list[str]:
    async with heal.db.read() as connection:
        events = await timeline_repo.for_action(connection, action_id)
    return [e["message"] for e in events if e["kind"] == "action.wake_recovered"]


async def test_a_wake_lost_with_its_worker_is_re_run_and_the_timeline_says_so(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    await heal.ingest.ingest([alert()])
    runtime = await _worker_dies_holding_a_wake(heal, clock)
    clock.advance(40)
    with capture_logs() as logs:
        assert await runtime.retry_stalled() == 1
    assert [(j["status"], j["args"]["version"]) for j in await _jobs(heal)] == [("todo", 0)]
    assert await _recoveries(heal, 1) == ["worker lost, wake re-run after 40 s"]
    (line,) = [e for e in logs if e["event"] == "recovered wakes of dead workers"]
    assert (line["re_run"], line["already_done"]) == (1, 0)
    await heal.engine.wake(1, 0)  # the re-run does the work the lost wake did not
    assert fake.tickets_created == 1


async def test_a_wake_that_committed_before_its_worker_died_leaves_no_failed_job(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    await heal.ingest.ingest([alert()])
    runtime = await _worker_dies_holding_a_wake(heal, clock)
    await heal.engine.wake(1, 0)  # committed, and deferred the next wake; then the kill
    with capture_logs() as logs:
        assert await runtime.retry_stalled() == 0
    assert [(j["status"], j["args"]["version"]) for j in await _jobs(heal)] == [("todo", 1)]
    assert await _recoveries(heal, 1) == []
    (line,) = [e for e in logs if e["event"] == "recovered wakes of dead workers"]
    assert (line["re_run"], line["already_done"]) == (0, 1)
