"""Replay on a recorded week of alerts: a week stored through heal's real ingest (and its
decisions) with a moving clock, then replayed with the same policy (it agrees with what
happened) and with a changed one (the differences a person would look for), writing
nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import HealFactory
from fakes.openai import FakeOpenAI, answer, serving_openai
from helpers import Clock
from sqlalchemy import func, select

from heal.app import Heal
from heal.decide.assembly import TierSet
from heal.decide.replay import ReplayReport, replay, without_llm
from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.policy import load_policy_text
from heal.policy.models import Policy
from heal.store import silences_repo, tables

WEEK_START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday
POLICY = """
kubernetes: {allowed_namespaces: [shop]}
actions:
  restart-workload:
    type: local
    command: [echo, "restart {{ params.namespace }}/{{ params.name }}"]
    params:
      namespace: {type: string, enum_from: kubernetes.allowed_namespaces}
      name: {type: string, pattern: "^[a-z0-9-]{1,63}$"}
  open-ticket:
    type: local
    command: [echo, ticket]
  page-oncall:
    type: local
    command: [echo, page]
    needs_approval: true
decide:
  expert_rules:
    - name: crash
      match: {alertname: "=~Pod.*"}
      action: restart-workload
      params: {namespace: "{{ alert.labels.namespace }}", name: "{{ alert.labels.deployment }}"}
    - {name: default, action: open-ticket}
rules:
  - name: workload-down
    match: {alertname: "=~PodCrashLooping|PodOOMKilled"}
    group_by: [alertname, deployment]
    decide: {catalogue: [restart-workload, open-ticket]}
  - name: disk-full
    match: {alertname: DiskFull}
    group_by: [alertname, instance]
    actions: [{action: open-ticket}]
"""
# The change under review: at most two restarts a week, and disks page the on-call too.
CHANGED = POLICY.replace(
    '      name: {type: string, pattern: "^[a-z0-9-]{1,63}$"}\n',
    '      name: {type: string, pattern: "^[a-z0-9-]{1,63}$"}\n'
    "    limits: [{max: 2, per: 604800, over: block}]\n",
).replace(
    "actions: [{action: open-ticket}]", "actions: [{action: open-ticket}, {action: page-oncall}]"
)


def _alert(name: str, starts: datetime, status: str = "firing", **labels: str) -> Alert:
    all_labels = {"alertname": name, "severity": "critical", **labels}
    return Alert(
        fingerprint=fingerprint_of(all_labels),
        status=AlertStatus(status),
        labels=all_labels,
        annotations={"summary": f"{name} on {labels}"},
        starts_at=starts,
        ends_at=starts + timedelta(minutes=10) if status == "resolved" else None,
    )


async def record_week(heal: Heal, clock: Clock) -> None:
    """Every morning the checkout pods crash-loop for ten minutes; on Wednesday and
    Saturday a disk fills up. Each notification arrives when the clock says."""
    for day in range(7):
        morning = WEEK_START + timedelta(days=day, hours=9)
        crash = {"namespace": "shop", "deployment": "checkout"}
        notifications = [
            (morning, _alert("PodCrashLooping", morning, **crash)),
            (
                morning + timedelta(minutes=10),
                _alert("PodCrashLooping", morning, "resolved", **crash),
            ),
        ]
        if day in (2, 5):
            noon = morning + timedelta(hours=3)
            disk = {"instance": "db-1"}
            notifications += [
                (noon, _alert("DiskFull", noon, **disk)),
                (noon + timedelta(minutes=10), _alert("DiskFull", noon, "resolved", **disk)),
            ]
        for at, alert in sorted(notifications, key=lambda n: n[0]):
            clock.now = at
            await heal.ingest.ingest([alert])
            await heal.decisions.drain()


async def recorded(make_heal: HealFactory, clock: Clock) -> Heal:
    heal: Heal = await make_heal(POLICY, clock=clock)
    heal.decisions.clock = clock
    await record_week(heal, clock)
    return heal


async def replayed(heal: Heal, policy: Policy, **kwargs: Any) -> ReplayReport:
    tiers = TierSet(heal.db, {})
    try:
        return await replay(
            heal.db,
            policy,
            tiers(policy),
            WEEK_START,
            WEEK_START + timedelta(days=7),
            **kwargs,
        )
    finally:
        await tiers.aclose()


async def row_counts(heal: Heal) -> dict[str, int]:
    async with heal.db.read() as connection:
        return {
            table.name: int(
                (await connection.execute(select(func.count()).select_from(table))).scalar_one()
            )
            for table in tables.metadata.sorted_tables
        }


async def test_replaying_the_policy_heal_ran_with_agrees_with_what_happened(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await recorded(make_heal, clock)
    before = await row_counts(heal)
    report = await replayed(heal, load_policy_text(POLICY))
    assert await row_counts(heal) == before  # replay wrote nothing
    assert report.alerts == 9
    assert [i.title for i in report.incidents] == [
        "PodCrashLooping (deployment=checkout)",
        "PodCrashLooping (deployment=checkout)",
        "PodCrashLooping (deployment=checkout)",
        "DiskFull (instance=db-1)",
        "PodCrashLooping (deployment=checkout)",
        "PodCrashLooping (deployment=checkout)",
        "PodCrashLooping (deployment=checkout)",
        "DiskFull (instance=db-1)",
        "PodCrashLooping (deployment=checkout)",
    ]
    assert [i.changed for i in report.incidents] == [False] * 9, [
        i.differences for i in report.incidents
    ]
    crash = report.incidents[0]
    (decision,) = crash.decisions
    assert (decision.tier, decision.action) == ("expert", "restart-workload")
    assert decision.winner is not None
    assert decision.winner.params == {"namespace": "shop", "name": "checkout"}
    assert [(a.action, a.verdict) for a in crash.actions] == [("restart-workload", "run")]
    assert [(d.tier, d.action) for d in crash.did_decisions] == [("expert", "restart-workload")]
    assert crash.resolved_at == WEEK_START + timedelta(hours=9, minutes=10)
    assert len(crash.stored_ids) == 1
    assert report.changed == []


async def test_replaying_a_changed_policy_shows_what_would_go_differently(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await recorded(make_heal, clock)
    before = await row_counts(heal)
    report = await replayed(heal, load_policy_text(CHANGED))
    assert await row_counts(heal) == before
    crashes = [i for i in report.incidents if i.title.startswith("PodCrashLooping")]
    disks = [i for i in report.incidents if i.title.startswith("DiskFull")]
    # The first two restarts of the week run; every later one is blocked by the new limit.
    assert [c.actions[0].verdict for c in crashes] == ["run", "run"] + ["blocked"] * 5
    assert not crashes[0].changed
    assert not crashes[1].changed
    assert crashes[2].differences == [
        "restart-workload: would be blocked (rate limit of 'restart-workload' reached: 2 in "
        "the last 604800 s (max 2)); was run (ended received)"
    ]
    # The decision itself is the same: only the gate changed its fate.
    assert all(
        (c.decisions[0].tier, c.decisions[0].action) == ("expert", "restart-workload")
        for c in crashes
    )
    for disk in disks:
        assert [(a.action, a.verdict) for a in disk.actions] == [
            ("open-ticket", "run"),
            ("page-oncall", "needs approval"),
        ]
        assert disk.differences == ["page-oncall: would be created (needs approval); was not"]
    assert len(report.changed) == 7
    assert report.totals() == {"run": 4, "blocked": 5, "needs approval": 2}
    data = report.as_dict()
    assert (data["incidents"], data["changed"]) == (9, 7)
    assert any("circuit breakers" in line for line in data["cannot_know"])


async def test_the_llm_is_asked_in_replay_unless_left_out(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await recorded(make_heal, clock)
    fake = FakeOpenAI()
    async with serving_openai(fake):
        with_llm = POLICY.replace(
            "decide:\n",
            f"decide:\n  llm: {{base_url: {fake.base_url}, model: 'qwen2.5:7b'}}\n",
        )
        policy = load_policy_text(with_llm)
        fake.responder = lambda body: answer("open-ticket", {}, 0.9, "a ticket is safer")
        report = await replayed(heal, policy, llm="asked")
        assert len(fake.answered) == 7  # one decision per crash incident
        crash = report.incidents[0]
        (decision,) = crash.decisions
        assert (decision.tier, decision.action) == ("llm", "open-ticket")
        assert decision.winner is not None
        assert decision.winner.rationale == "a ticket is safer"
        assert crash.differences == [
            "open-ticket: would be created (run); was not",
            "restart-workload: was created (ended received); would not be",
            "decision of 'workload-down': would be llm open-ticket; was expert restart-workload",
        ]
        skipped = await replayed(heal, without_llm(policy), llm="skipped")
        assert len(fake.answered) == 7  # not asked again
        assert not skipped.changed


async def test_actions_before_the_window_count_towards_its_limits(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await recorded(make_heal, clock)
    policy = load_policy_text(CHANGED)
    tiers = TierSet(heal.db, {})
    try:
        report = await replay(
            heal.db,
            policy,
            tiers(policy),
            WEEK_START + timedelta(days=3),  # Thursday on: three restarts happened before
            WEEK_START + timedelta(days=7),
        )
    finally:
        await tiers.aclose()
    crashes = [i for i in report.incidents if i.title.startswith("PodCrashLooping")]
    assert len(crashes) == 4
    assert [c.actions[0].verdict for c in crashes] == ["blocked"] * 4
    assert crashes[0].actions[0].reason == (
        "rate limit of 'restart-workload' reached: 3 in the last 604800 s (max 2)"
    )


async def test_freezes_and_silences_are_replayed_at_the_time_of_each_alert(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await recorded(make_heal, clock)
    async with heal.db.write() as connection:  # a silence added after the week, backdated
        await silences_repo.add(
            connection,
            {
                "matchers": {"alertname": "PodCrashLooping"},
                "starts_at": WEEK_START + timedelta(days=1),
                "ends_at": WEEK_START + timedelta(days=2),
                "created_by": "alice",
                "comment": "checkout migration",
                "created_at": clock.now,
            },
        )
    frozen = POLICY + (
        "governors:\n"
        "  freeze:\n"
        "    - {window: 'Sat 00:00-Mon 00:00', mode: block, match: {alertname: DiskFull}}\n"
    )
    report = await replayed(heal, load_policy_text(frozen))
    crashes = [i for i in report.incidents if i.title.startswith("PodCrashLooping")]
    disks = [i for i in report.incidents if i.title.startswith("DiskFull")]
    assert [c.actions[0].verdict for c in crashes] == ["run", "silenced"] + ["run"] * 5
    assert crashes[1].actions[0].reason == "by silence #1 (checkout migration)"
    assert crashes[1].differences == [
        "restart-workload: would be silenced (by silence #1 (checkout migration)); was run "
        "(ended received)"
    ]
    wednesday, saturday = disks
    assert [a.verdict for a in wednesday.actions] == ["run"]
    assert [(a.verdict, a.reason) for a in saturday.actions] == [
        ("blocked", "change freeze 'Sat 00:00-Mon 00:00' in force")
    ]
