"""The verdicts on every backend: SQLite, PostgreSQL, and the distributed runtime, the
sweep included (the runtime's own sweep, as its sweeper runs it)."""

from __future__ import annotations

import pytest
from conftest import HealFactory
from helpers import Clock
from verify_support import (
    QUIET,
    WITHIN,
    fire_and_succeed,
    fired_again,
    resolve,
    resolved,
    verify_policy,
    watch_of,
)

from heal.app import Heal
from heal.demo.itsm import FakeITSM

pytestmark = pytest.mark.usefixtures("backend")


async def _heal(make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock) -> Heal:
    heal: Heal = await make_heal(verify_policy(itsm[1], "escalate"), clock=clock)
    heal.verification.clock = clock
    heal.approvals.clock = clock
    return heal


async def test_verified_and_relapsed_on_every_backend(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    await fire_and_succeed(heal, clock)
    clock.advance(20)
    await resolve(heal)
    assert await heal.verification.sweep() == 0
    clock.advance(QUIET)
    assert await heal.verification.sweep() == 1
    assert (await watch_of(heal))["outcome"] == "verified"

    clock.advance(60)
    second = fired_again(clock)
    report = await heal.ingest.ingest([second])
    assert report.actions_created == 1  # a new incident, a new open-ticket: watched too
    (new,) = report.incident_ids
    from helpers import drive

    assert (await drive(heal, clock, 3))["status"] == "success"
    clock.advance(30)
    await heal.ingest.ingest([resolved(second, clock)])
    clock.advance(30)
    await heal.ingest.ingest([fired_again(clock)])
    # Recorded by the ingest of the new firing, in its transaction: no sweep ran.
    relapsed = await watch_of(heal, 3)
    assert relapsed["outcome"] == "relapsed"
    assert relapsed["incident_id"] == new
    assert relapsed["outcome_at"] == clock.now
    assert await heal.verification.sweep() == 0


async def test_ineffective_escalates_through_the_runtimes_sweep(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN)
    heal.runtime.add_sweep(heal.verification.sweep)  # as heal.start(worker=True) does
    await heal.runtime.sweep()
    assert (await watch_of(heal))["outcome"] == "ineffective"
    from verify_support import action

    follow = await action(heal, 2)
    assert follow is not None
    assert (follow["action_name"], follow["status"]) == ("second-ticket", "waiting")
