"""Playbooks learned from rated and verified remediations: made, merged, recounted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conftest import HealFactory
from helpers import Clock, alert, drive, policy_text

from heal.app import Heal
from heal.decide.learning import LearnedRemediation, LearningSweep, record_rejection
from heal.demo.itsm import FakeITSM
from heal.domain.alerts import Alert, fingerprint_of
from heal.domain.playbooks import wilson_lower_bound
from heal.store import incidents_repo, playbooks_repo
from heal.verify import ratings


def _alert(labels: dict[str, str], status: str = "firing") -> Alert:
    """The tests' CheckoutDown alert with more labels (pod, instance)."""
    made = alert(status=status)
    merged = {**made.labels, **labels}
    return replace(made, labels=merged, fingerprint=fingerprint_of(merged))


async def _remediated(heal: Heal, clock: Clock, **labels: str) -> int:
    """An incident whose ticket action succeeded; its id."""
    report = await heal.ingest.ingest([_alert(labels)])
    (incident_id,) = report.incident_ids
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, incident_id)
    assert (await drive(heal, clock, action["id"]))["status"] == "success"
    return incident_id


async def _rate(heal: Heal, clock: Clock, incident_id: int, score: int) -> None:
    clock.advance(1)
    await ratings.rate(heal.db, incident_id, "alice", score, "", clock.now, heal.approvals.redact)


async def _resolve(heal: Heal, clock: Clock, **labels: str) -> None:
    clock.advance(60)
    await heal.ingest.ingest([_alert(labels, "resolved")])


async def _playbooks(heal: Heal) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return await playbooks_repo.page(connection)


async def test_a_full_fix_is_approved_at_once_and_never_counted_twice(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]), clock=clock)
    sweep = LearningSweep(heal.db, clock=clock)
    incident = await _remediated(heal, clock, pod="checkout-7d9f8b6c4-x2x9z")
    await _resolve(heal, clock, pod="checkout-7d9f8b6c4-x2x9z")
    await _rate(heal, clock, incident, 5)
    assert await sweep.sweep() == 1
    assert await sweep.sweep() == 0  # nothing new
    (playbook,) = await _playbooks(heal)
    assert playbook["status"] == "approved"
    assert (playbook["runs"], playbook["verified_successes"]) == (1, 1)
    assert playbook["action_name"] == "open-ticket"
    assert playbook["signature"]["alertname"] == "CheckoutDown"
    assert "pod" not in playbook["signature"]["labels"]
    async with heal.db.read() as connection:
        row = await incidents_repo.get(connection, incident)
    assert row is not None
    assert playbook["mttr_seconds"] == (row["resolved_at"] - row["opened_at"]).total_seconds()
    assert playbook["lower_bound"] == wilson_lower_bound(1, 1)
    assert playbook["learned_from"] == incident


async def test_a_later_rating_adjusts_the_stats_instead_of_adding_to_them(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]), clock=clock)
    sweep = LearningSweep(heal.db, clock=clock)
    incident = await _remediated(heal, clock)
    await _rate(heal, clock, incident, 4)
    await sweep.sweep()
    (draft,) = await _playbooks(heal)
    assert (draft["status"], draft["runs"], draft["verified_successes"]) == ("draft", 1, 1)
    await _rate(heal, clock, incident, 2)  # on second thought, it did not help
    assert await sweep.sweep() == 1
    (worse,) = await _playbooks(heal)
    assert (worse["runs"], worse["verified_successes"]) == (1, 0)
    assert worse["lower_bound"] == 0.0
    await _rate(heal, clock, incident, 5)
    await sweep.sweep()
    (best,) = await _playbooks(heal)
    assert (best["status"], best["runs"], best["verified_successes"]) == ("approved", 1, 1)


async def test_the_same_symptoms_and_fix_merge_and_a_failure_counts_as_a_run(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]), clock=clock)
    sweep = LearningSweep(heal.db, clock=clock)
    first = await _remediated(heal, clock, pod="a-1", instance="10.0.0.1:80")
    await _resolve(heal, clock, pod="a-1", instance="10.0.0.1:80")
    await _rate(heal, clock, first, 4)
    second = await _remediated(heal, clock, pod="b-2", instance="10.0.0.2:80")
    await _resolve(heal, clock, pod="b-2", instance="10.0.0.2:80")
    await _rate(heal, clock, second, 5)
    failed = await _remediated(heal, clock, pod="c-3", instance="10.0.0.3:80")
    await _rate(heal, clock, failed, 1)
    assert await sweep.sweep() == 3
    (playbook,) = await _playbooks(heal)
    assert (playbook["runs"], playbook["verified_successes"]) == (3, 2)
    assert playbook["status"] == "approved"  # the 5 approved the draft
    assert playbook["mttr_samples"] == 2  # the failed incident is still open


async def test_a_failure_without_a_playbook_teaches_nothing(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]), clock=clock)
    sweep = LearningSweep(heal.db, clock=clock)
    incident = await _remediated(heal, clock)
    await _rate(heal, clock, incident, 3)
    assert await sweep.sweep() == 1
    assert await _playbooks(heal) == []


async def test_rejections_lower_the_bound_and_learners_are_injectable(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]), clock=clock)
    seen: list[LearnedRemediation] = []

    async def spy(connection: Any, remedy: LearnedRemediation) -> None:
        seen.append(remedy)

    incident = await _remediated(heal, clock, pod="x-1")
    await _rate(heal, clock, incident, 5)
    await LearningSweep(heal.db, clock=clock).sweep()
    assert await LearningSweep(heal.db, [spy], clock=clock).sweep() == 0  # already learned
    await _rate(heal, clock, incident, 4)
    assert await LearningSweep(heal.db, [spy], clock=clock).sweep() == 1
    (remedy,) = seen
    assert (remedy.effectiveness, remedy.previous_effectiveness) == (4, 5)
    assert remedy.labels["pod"] == "x-1"
    assert remedy.action_name == "open-ticket"
    (playbook,) = await _playbooks(heal)
    async with heal.db.write() as connection:
        after = await record_rejection(connection, playbook["id"], clock.now)
    assert after is not None
    assert after["rejections"] == 1
    assert after["lower_bound"] == wilson_lower_bound(1, 2) < playbook["lower_bound"]


async def test_two_sweeps_of_the_same_news_learn_it_once(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]), clock=clock)
    incident = await _remediated(heal, clock)
    await _rate(heal, clock, incident, 5)
    marker = {
        "incident_id": incident,
        "effectiveness": 5,
        "seen_at": clock.now,
        "learned_at": clock.now,
        "playbook_id": None,
        "playbook_success": False,
    }
    async with heal.db.write() as connection:
        assert await playbooks_repo.claim_learned(connection, marker)
        assert not await playbooks_repo.claim_learned(connection, marker)  # the other sweep
    # The one that claimed it found nothing learned by the learners: it is not due again.
    assert await LearningSweep(heal.db, clock=clock).sweep() == 0
