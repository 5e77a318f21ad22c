"""Verification of fixes end to end on SQLite: every verdict, its timing, a restart in the
middle of the watch, and what an ineffective fix starts (escalate, rollback, none)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import HealFactory
from helpers import Clock, alert, drive
from prometheus_client import REGISTRY
from sqlalchemy import text
from verify_support import (
    QUIET,
    WITHIN,
    action,
    chat_updates,
    fire_and_succeed,
    fired_again,
    outcome_entries,
    resolve,
    summary,
    verify_policy,
    watch_of,
)

from heal.app import Heal
from heal.demo.itsm import FakeITSM
from heal.domain.approvals import Role, Signer
from heal.policy import load_policy_text
from heal.settings import Settings
from heal.store import approvals_repo, timeline_repo

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def _heal(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock, policy: str | None = None
) -> Heal:
    heal: Heal = await make_heal(policy or verify_policy(itsm[1]), clock=clock)
    heal.verification.clock = clock
    heal.approvals.clock = clock
    return heal


def _outcomes(outcome: str, rule: str = "checkout-down", name: str = "open-ticket") -> float:
    value = REGISTRY.get_sample_value(
        "heal_action_outcomes_total", {"outcome": outcome, "rule": rule, "action": name}
    )
    return value or 0.0


async def test_resolved_in_time_and_quiet_is_verified(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    before = _outcomes("verified")
    done = await fire_and_succeed(heal, clock)
    watch = await watch_of(heal)
    assert watch["outcome"] == "pending"
    assert (watch["within_at"] - done["finished_at"]).total_seconds() == WITHIN

    clock.advance(60)
    await resolve(heal)
    assert await heal.verification.sweep() == 0  # resolved: now it must stay quiet
    watch = await watch_of(heal)
    assert watch["outcome"] == "pending"
    assert (watch["quiet_until"] - watch["resolved_at"]).total_seconds() == QUIET

    clock.advance(QUIET - 1)
    assert await heal.verification.sweep() == 0
    clock.advance(1)
    assert await heal.verification.sweep() == 1
    watch = await watch_of(heal)
    assert watch["outcome"] == "verified"
    assert watch["outcome_at"] == clock.now
    # The action's status is untouched: the outcome sits beside it.
    row = await action(heal, 1)
    assert row is not None
    assert row["status"] == "success"
    entries = await outcome_entries(heal)
    assert [e["data"]["outcome"] for e in entries] == ["pending", "verified"]
    assert "fixed the incident" in entries[-1]["message"]
    assert _outcomes("verified") == before + 1
    assert (await summary(heal))["effectiveness"] == 5
    assert await heal.verification.sweep() == 0  # one verdict only


async def test_still_firing_at_within_is_ineffective_and_a_late_resolution_scores_4(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    before = _outcomes("ineffective")
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN - 1)
    assert await heal.verification.sweep() == 0
    clock.advance(1)
    assert await heal.verification.sweep() == 1
    watch = await watch_of(heal)
    assert watch["outcome"] == "ineffective"
    (firing,) = watch["evidence"]["still_firing"]
    assert firing["alertname"] == "CheckoutDown"
    assert firing["fingerprint"] == alert().fingerprint
    assert (
        "still firing 300 s after it succeeded: CheckoutDown{"
        in ((await outcome_entries(heal))[-1]["message"])
    )
    assert _outcomes("ineffective") == before + 1
    assert (await summary(heal))["effectiveness"] == 1
    assert await chat_updates(heal) == []  # on_ineffective none: nobody is told

    clock.advance(120)
    await resolve(heal)  # the incident resolved after all, too late for the verdict
    assert (await watch_of(heal))["outcome"] == "ineffective"
    assert (await summary(heal))["effectiveness"] == 4


async def test_a_sweep_that_comes_late_judges_by_when_the_incident_resolved(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN + 30)
    await resolve(heal)  # resolved, but after within: no sweep ran in between
    clock.advance(QUIET + 1)
    assert await heal.verification.sweep() == 1
    watch = await watch_of(heal)
    assert watch["outcome"] == "ineffective"
    assert watch["evidence"]["still_firing"], "the alert still fired at the deadline"
    assert "resolved only at" in (await outcome_entries(heal))[-1]["message"]
    assert (await summary(heal))["effectiveness"] == 4


async def test_firing_again_within_quiet_for_is_relapsed_at_ingest(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    """The ingest that stores the new firing records the relapse, in its transaction:
    no sweep runs, and the one that comes later finds nothing left to judge."""
    heal = await _heal(make_heal, itsm, clock)
    before = _outcomes("relapsed")
    await fire_and_succeed(heal, clock)
    clock.advance(30)
    await resolve(heal)
    clock.advance(QUIET - 10)
    report = await heal.ingest.ingest([fired_again(clock)])
    assert report.incidents_opened == 1  # the same group, a new incident
    watch = await watch_of(heal)
    assert watch["outcome"] == "relapsed"
    assert watch["outcome_at"] == clock.now
    assert await heal.verification.sweep() == 0
    (again,) = watch["evidence"]["fired_again"]
    assert again["fingerprint"] == alert().fingerprint
    assert again["incident_id"] == report.incident_ids[0]
    assert watch["evidence"]["incidents"] == report.incident_ids
    assert "fired again within 600 s" in (await outcome_entries(heal))[-1]["message"]
    assert _outcomes("relapsed") == before + 1
    assert (await summary(heal))["effectiveness"] == 1


async def test_firing_again_after_quiet_for_does_not_undo_the_verdict(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    await fire_and_succeed(heal, clock)
    await resolve(heal)
    clock.advance(QUIET + 5)
    # heal was down for the end of the window: the new firing comes after it, and the
    # sweep that finally runs judges the window by the times the rows record.
    await heal.ingest.ingest([fired_again(clock)])  # judged there, by the rows' times
    assert await heal.verification.sweep() == 0
    assert (await watch_of(heal))["outcome"] == "verified"


async def test_a_restart_during_the_watch_still_reaches_the_verdict(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock, tmp_path: Any
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    await fire_and_succeed(heal, clock)
    clock.advance(10)
    await resolve(heal)
    url = heal.settings.database_url
    await heal.stop()  # heal goes away in the middle of the quiet window

    clock.advance(QUIET + 60)
    again = Heal.build(
        Settings(database_url=url, runtime="embedded"), load_policy_text(verify_policy(itsm[1]))
    )
    try:
        again.verification.clock = clock
        assert await again.verification.sweep() == 1
        assert (await watch_of(again))["outcome"] == "verified"
    finally:
        await again.stop()


async def test_no_verify_no_outcome(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    from helpers import policy_text

    heal = await _heal(make_heal, itsm, clock, policy_text(itsm[1]))
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN * 10)
    assert await heal.verification.sweep() == 0
    assert await outcome_entries(heal) == []
    assert (await summary(heal)) == {
        "outcome": None,
        "effectiveness": None,
        "rating": None,
        "ratings": [],
    }


async def test_the_actions_verify_overrides_the_rules_key_by_key(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    policy = verify_policy(itsm[1], action_verify="{within: 60}")
    heal = await _heal(make_heal, itsm, clock, policy)
    done = await fire_and_succeed(heal, clock)
    watch = await watch_of(heal)
    assert (watch["within_at"] - done["finished_at"]).total_seconds() == 60
    assert watch["quiet_for"] == QUIET  # the rule's


async def test_escalate_tells_the_thread_and_asks_approval_for_the_next_action(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, verify_policy(itsm[1], "escalate"))
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN)
    assert await heal.verification.sweep() == 1

    follow = await action(heal, 2)
    assert follow is not None
    assert (follow["action_name"], follow["status"], follow["incident_id"]) == (
        "second-ticket",
        "waiting",
        1,
    )
    async with heal.db.read() as connection:
        approval = await approvals_repo.for_action(connection, 2)
    assert approval is not None
    assert approval["status"] == "pending"
    texts = [(n["kind"], n["text"]) for n in await chat_updates(heal)]
    assert texts[0] == ("card", "second-ticket (risk medium) awaits approval")
    kind, text = texts[1]
    assert kind == "update"
    assert "ineffective" in text
    assert "CheckoutDown{" in text
    assert f"approval #{approval['id']} requested for 'second-ticket' (#2)" in text
    # Approving runs it, as any approval does.
    alice = Signer("alice", Role.APPROVER, frozenset())
    await heal.approvals.sign(approval["id"], alice, approve=True)
    assert (await drive(heal, clock, 2))["status"] == "success"


async def test_escalate_after_a_relapse_acts_in_the_new_incident(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, verify_policy(itsm[1], "escalate"))
    await fire_and_succeed(heal, clock)
    await resolve(heal)  # starts second-ticket (signal resolved) for incident 1
    assert (await drive(heal, clock, 2))["status"] == "success"
    clock.advance(60)
    report = await heal.ingest.ingest([fired_again(clock)])
    (relapse_incident,) = report.incident_ids
    # Both actions were under the rule's verify, and both relapsed: judged at ingest.
    assert await heal.verification.sweep() == 0
    assert (await watch_of(heal, 1))["outcome"] == "relapsed"
    assert (await watch_of(heal, 2))["outcome"] == "relapsed"
    async with heal.db.read() as connection:
        rows = await connection.execute(
            text("SELECT id, incident_id, action_name, status FROM actions ORDER BY id")
        )
        actions = [tuple(r) for r in rows]
    assert (4, relapse_incident, "second-ticket", "waiting") in actions
    # Judged in the ingest's transaction, after its own entries: the new incident's
    # timeline reads in order.
    async with heal.db.read() as connection:
        entries = await timeline_repo.for_incident(connection, relapse_incident)
    kinds = [e["kind"] for e in entries]
    assert kinds.index("incident.opened") < kinds.index("alert.received")
    created = [e["message"] for e in entries if e["kind"] == "action.created"]
    assert created[-1].startswith("action 'second-ticket' created by verification of #1")
    assert kinds.index("alert.received") < kinds.index("action.created")
    first, second = [n["text"] for n in await chat_updates(heal) if n["kind"] == "update"]
    assert "relapsed" in first
    assert "fired again" in first
    assert "'second-ticket' (#4)" in first
    assert "no further action" in second


async def test_escalate_without_a_next_action_says_so(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    policy = verify_policy(itsm[1], "escalate").replace(
        ", {action: second-ticket, signal: [resolved]}", ""
    )
    heal = await _heal(make_heal, itsm, clock, policy)
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN)
    assert await heal.verification.sweep() == 1
    assert await action(heal, 2) is None
    (update,) = await chat_updates(heal)
    assert "rule 'checkout-down' has no further action" in update["text"]


async def test_rollback_runs_the_declared_rollback_action(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    policy = verify_policy(itsm[1], "rollback", rollback="undo-ticket")
    heal = await _heal(make_heal, itsm, clock, policy)
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN)
    assert await heal.verification.sweep() == 1
    undo = await action(heal, 2)
    assert undo is not None
    assert (undo["action_name"], undo["status"]) == ("undo-ticket", "received")
    assert (await drive(heal, clock, 2))["status"] == "success"
    assert (
        "rolling back: 'undo-ticket' created (#2)" in ((await outcome_entries(heal))[-1]["message"])
    )


async def test_rollback_without_a_declared_one_records_why(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, verify_policy(itsm[1], "rollback"))
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN)
    assert await heal.verification.sweep() == 1
    assert await action(heal, 2) is None
    assert "no rollback: it declares no rollback" in (await outcome_entries(heal))[-1]["message"]


async def test_on_ineffective_none_only_records(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, verify_policy(itsm[1], "none"))
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN)
    assert await heal.verification.sweep() == 1
    assert await action(heal, 2) is None
    assert await chat_updates(heal) == []


async def test_escalate_judged_late_starts_nothing_once_the_incident_resolved(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, verify_policy(itsm[1], "escalate"))
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN + 60)
    await resolve(heal)  # starts second-ticket on its own signal (resolved): action 2
    assert await heal.verification.sweep() == 1
    assert (await watch_of(heal))["outcome"] == "ineffective"
    assert await action(heal, 3) is None
    (update,) = [n for n in await chat_updates(heal) if n["kind"] == "update"]
    assert "the incident has resolved since; 'second-ticket' not started" in update["text"]


async def test_a_failing_check_at_ingest_leaves_the_verdict_to_the_sweep(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The alerts are stored whatever verification does; the sweep reaches the same
    verdict from the same rows."""
    heal = await _heal(make_heal, itsm, clock)
    await fire_and_succeed(heal, clock)
    await resolve(heal)
    clock.advance(60)
    judge = heal.verification._record

    async def broken(*args: Any, **kwargs: Any) -> Any:
        await judge(*args, **kwargs)  # writes, then fails: the savepoint undoes it all
        raise RuntimeError("a bug in verification")

    monkeypatch.setattr(heal.verification, "_record", broken)
    report = await heal.ingest.ingest([fired_again(clock)])

    assert (report.new, report.incidents_opened) == (1, 1)
    assert (await watch_of(heal))["outcome"] == "pending"
    assert [e["data"]["outcome"] for e in await outcome_entries(heal)] == ["pending"]
    monkeypatch.undo()
    assert await heal.verification.sweep() == 1
    assert (await watch_of(heal))["outcome"] == "relapsed"


async def test_another_alert_of_the_group_relapses_the_fix_at_ingest(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    """Not the same alert, but a new incident of the same group key (another pod of the
    service): a relapse, recorded by that ingest."""
    heal = await _heal(make_heal, itsm, clock)
    before = _outcomes("relapsed")
    await fire_and_succeed(heal, clock)
    await resolve(heal)
    clock.advance(60)

    report = await heal.ingest.ingest([fired_again(clock, pod="checkout-7")])

    assert report.incidents_opened == 1
    watch = await watch_of(heal)
    assert watch["outcome"] == "relapsed"
    assert watch["evidence"]["fired_again"] == []
    assert watch["evidence"]["incidents"] == report.incident_ids
    assert (
        f"incident #{report.incident_ids[0]} opened" in (await outcome_entries(heal))[-1]["message"]
    )
    assert _outcomes("relapsed") == before + 1


async def test_a_firing_of_another_group_leaves_the_watch_alone(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    await fire_and_succeed(heal, clock)
    await resolve(heal)
    clock.advance(60)

    await heal.ingest.ingest([fired_again(clock, service="cart")])

    assert (await watch_of(heal))["outcome"] == "pending"
