"""The embedded runtime: leases, the sweeper, restart after a crash."""

from __future__ import annotations

from datetime import timedelta

from conftest import HealFactory
from helpers import Clock, alert, policy_text
from sqlalchemy import update

from heal.demo.itsm import FakeITSM
from heal.runtime.embedded import EmbeddedRuntime
from heal.store import actions_repo
from heal.store.tables import actions


async def test_sweeper_rewakes_an_action_whose_wake_was_lost(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    await heal.ingest.ingest([alert()])
    async with heal.db.write() as connection:
        await connection.execute(update(actions).values(next_wake_at=None))
    runtime = EmbeddedRuntime(heal.db)
    assert await runtime.sweep() == 1
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, 1)
    assert row is not None
    assert row["next_wake_at"] is not None
    assert await runtime.sweep() == 0


async def test_leases_exclude_a_second_claimer_until_they_run_out(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    await heal.ingest.ingest([alert(service=f"s{i}") for i in range(3)])
    now = clock.now
    lease = now + timedelta(seconds=60)
    async with heal.db.write() as connection:
        first = await actions_repo.claim_due(connection, now, lease, 10)
    async with heal.db.write() as connection:
        second = await actions_repo.claim_due(connection, now, lease, 10)
    assert sorted(c["id"] for c in first) == [1, 2, 3]
    assert second == []
    later = now + timedelta(seconds=61)
    async with heal.db.write() as connection:
        again = await actions_repo.claim_due(connection, later, later + timedelta(60), 2)
    assert len(again) == 2  # the lease ran out (its holder died): due again, in batches
