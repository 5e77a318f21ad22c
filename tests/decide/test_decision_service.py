"""Deciding through heal: a rule with decide: opens one decision per incident, the tiers run
outside any transaction within the budget, every proposal is checked against the catalogue
and the action's params, and the winner's action is created through the usual gate."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import playbook_support
import pytest
from conftest import HealFactory
from helpers import AUTH, Clock, alert, drive
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from heal.api.app import create_app
from heal.app import Heal
from heal.cli.main import app as cli
from heal.decide.tiers import DecisionInput, TierAnswer
from heal.domain.access import Role
from heal.domain.approvals import Signer
from heal.domain.decisions import Proposal, TierName
from heal.policy.loader import PolicyError, load_policy_text
from heal.policy.models import Policy
from heal.store import (
    actions_repo,
    approvals_repo,
    decisions_repo,
    incidents_repo,
    playbooks_repo,
    timeline_repo,
    users_repo,
)

POLICY = """
kubernetes: {allowed_namespaces: [shop, "=~team-.*"]}
actions:
  restart-workload:
    type: local
    command: [echo, "{{ params.namespace }}/{{ params.name }}"]
    params:
      namespace: {type: string, enum_from: kubernetes.allowed_namespaces}
      name: {type: string, pattern: "^[a-z0-9-]{1,63}$"}
  scale-up:
    type: local
    command: [echo, "{{ params.replicas }}"]
    params:
      replicas: {type: integer, minimum: 1, maximum: 10}
  open-ticket:
    type: local
    command: [echo, ticket]
  not-allowed:
    type: local
    command: [echo, never]
decide:
  budget: BUDGET
  expert_rules:
    - {name: pod-crash, match: {alertname: "=~.*(Crash|OOM).*"}, action: restart-workload,
       params: {namespace: "{{ alert.labels.namespace }}", name: "{{ alert.labels.deployment }}"},
       rationale: restarting clears a crash loop}
    - {name: default, action: open-ticket}
rules:
  - name: workload-down
    match: {severity: critical}
    group_by: [alertname, namespace]
    decide: {catalogue: [restart-workload, scale-up, open-ticket]}
"""


@dataclass
class ScriptedTier:
    """A tier whose answer the test sets, recording what it was asked."""

    name: TierName
    answer: TierAnswer | None = None
    delay: float = 0.0
    asked: list[DecisionInput] = field(default_factory=list)

    async def propose(self, request: DecisionInput, deadline: float) -> TierAnswer:
        self.asked.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answer or TierAnswer.none("nothing scripted")


async def deciding_heal(
    make_heal: HealFactory, clock: Clock, *tiers: ScriptedTier, budget: float = 30
) -> Heal:
    heal: Heal = await make_heal(POLICY.replace("BUDGET", str(budget)), clock=clock)
    heal.decisions.clock = clock
    heal.decisions.tiers = lambda policy: tiers
    return heal


async def decided(heal: Heal, **labels: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ingest a crash alert, let its decision run: (the decision, the incident's timeline)."""
    report = await heal.ingest.ingest([alert("PodCrashLooping", **labels)])
    await heal.decisions.drain()
    async with heal.db.read() as connection:
        (decision,) = await decisions_repo.for_incident(connection, report.incident_ids[0])
        entries = await timeline_repo.for_incident(connection, report.incident_ids[0])
    return decision, entries


def said(entries: list[dict[str, Any]], kind: str) -> list[str]:
    return [e["message"] for e in entries if e["kind"] == kind]


async def action_of(heal: Heal, decision: dict[str, Any]) -> dict[str, Any]:
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, decision["action_id"])
    assert row is not None
    return row


async def test_the_expert_rules_decide_when_no_other_tier_answers(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await deciding_heal(make_heal, clock)
    decision, entries = await decided(heal, namespace="shop", deployment="web", pod="web-7f9c")
    assert (decision["state"], decision["tier"]) == ("ready", "expert")
    assert decision["proposal"]["params"] == {"namespace": "shop", "name": "web"}
    assert decision["proposal"]["confidence"] == 0.0
    action = await action_of(heal, decision)
    assert action["action_name"] == "restart-workload"
    assert action["config"]["execute_config"]["params"] == {"namespace": "shop", "name": "web"}
    assert action["context"]["decision"] == {
        "id": decision["id"],
        "tier": "expert",
        "confidence": 0.0,
    }
    assert said(entries, "decision.opened") == [
        f"decision #{decision['id']} opened for rule 'workload-down' (budget 30 s)"
    ]
    assert said(entries, "decision.made") == [
        f"decision #{decision['id']}: restart-workload {{namespace: shop, name: web}} proposed "
        "by the expert tier (restarting clears a crash loop)"
    ]
    done = await drive(heal, clock, action["id"])
    assert done["status"] == "success"
    assert done["outputs"]["stdout"].strip() == "shop/web"
    async with heal.db.read() as connection:
        final = await decisions_repo.get(connection, decision["id"])
    assert final is not None
    assert final["state"] == "completed"


async def test_an_expert_rule_whose_params_do_not_validate_passes_to_the_default(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await deciding_heal(make_heal, clock)
    # kube-system is not allowed, and a name with a shell command never matches the pattern
    decision, _ = await decided(heal, namespace="shop", deployment="web; rm -rf /")
    assert decision["proposal"]["action"] == "open-ticket"
    (attempt,) = decision["attempts"]
    assert attempt["proposal"]["evidence"] == {"expert_rule": "default"}


async def test_a_proposal_outside_the_catalogue_is_rejected_and_the_next_tier_runs(
    make_heal: HealFactory, clock: Clock
) -> None:
    llm = ScriptedTier(
        TierName.LLM, TierAnswer(Proposal(TierName.LLM, "not-allowed", {}, confidence=0.9))
    )
    heal = await deciding_heal(make_heal, clock, llm)
    decision, entries = await decided(heal, namespace="shop", deployment="web")
    first, second = decision["attempts"]
    assert first["tier"] == "llm"
    assert first["rejected"] == (
        "proposed 'not-allowed', which is not in the catalogue "
        "(restart-workload, scale-up, open-ticket)"
    )
    assert (second["tier"], decision["tier"]) == ("expert", "expert")
    assert any(
        "llm tier no proposal: proposed 'not-allowed'" in m for m in said(entries, "decision.tier")
    )


async def test_params_that_violate_the_actions_schema_are_rejected(
    make_heal: HealFactory, clock: Clock
) -> None:
    bad = Proposal(TierName.LLM, "scale-up", {"replicas": 500}, confidence=0.8)
    heal = await deciding_heal(make_heal, clock, ScriptedTier(TierName.LLM, TierAnswer(bad)))
    decision, _ = await decided(heal, namespace="shop", deployment="web")
    assert (
        decision["attempts"][0]["rejected"]
        == "params rejected: param 'replicas': 500 is above 10.0"
    )
    assert decision["tier"] == "expert"


async def test_the_first_valid_proposal_wins_and_later_tiers_are_not_asked(
    make_heal: HealFactory, clock: Clock
) -> None:
    good = Proposal(TierName.PLAYBOOK, "scale-up", {"replicas": 3}, evidence={"playbook_id": 7})
    playbooks = ScriptedTier(TierName.PLAYBOOK, TierAnswer(good))
    llm = ScriptedTier(TierName.LLM)
    heal = await deciding_heal(make_heal, clock, playbooks, llm)
    decision, _ = await decided(heal, namespace="shop", deployment="web")
    assert (decision["tier"], decision["proposal"]["params"]) == ("playbook", {"replicas": 3})
    assert llm.asked == []
    asked = playbooks.asked[0]
    assert asked.first_alert["labels"]["deployment"] == "web"
    assert set(asked.catalogue) == {"restart-workload", "scale-up", "open-ticket"}
    action = await action_of(heal, decision)
    assert action["config"]["execute_config"]["params"] == {"replicas": 3}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_tier_slower_than_the_budget_is_abandoned(
    make_heal: HealFactory, clock: Clock
) -> None:
    won = {"state": "ready", "tier": "expert", "rule": "workload-down"}
    before = sample("heal_decisions_total", **won)
    abandoned = sample("heal_decision_tier_seconds_count", tier="llm", answer="rejected")
    slow = ScriptedTier(
        TierName.LLM, TierAnswer(Proposal(TierName.LLM, "scale-up", {"replicas": 2})), delay=30
    )
    heal = await deciding_heal(make_heal, clock, slow, budget=1)
    decision, _ = await decided(heal, namespace="shop", deployment="web")
    assert decision["attempts"][0]["rejected"].endswith("s: the budget ran out")
    assert decision["attempts"][0]["rejected"].startswith("abandoned after")
    assert decision["tier"] == "expert"
    assert sample("heal_decisions_total", **won) == before + 1  # on /metrics
    assert (
        sample("heal_decision_tier_seconds_count", tier="llm", answer="rejected") == abandoned + 1
    )


async def test_later_alerts_of_the_incident_join_its_one_decision(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await deciding_heal(make_heal, clock)
    first = await heal.ingest.ingest([alert("PodCrashLooping", namespace="shop", pod="a")])
    second = await heal.ingest.ingest([alert("PodCrashLooping", namespace="shop", pod="b")])
    assert first.incident_ids == second.incident_ids
    await heal.decisions.drain()
    await heal.ingest.ingest([alert("PodCrashLooping", namespace="shop", pod="c")])
    await heal.decisions.drain()
    async with heal.db.read() as connection:
        decisions = await decisions_repo.for_incident(connection, first.incident_ids[0])
        actions = await incidents_repo.actions_of(connection, first.incident_ids[0])
        entries = await timeline_repo.for_incident(connection, first.incident_ids[0])
    assert (len(decisions), len(actions)) == (1, 1)
    assert len(said(entries, "decision.joined")) == 2


async def test_a_decision_whose_process_died_is_resumed_by_the_sweep(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await deciding_heal(make_heal, clock)
    heal.ingest.on_decisions = lambda ids: None  # the process dies before it starts it
    report = await heal.ingest.ingest(
        [alert("PodCrashLooping", namespace="shop", deployment="web")]
    )
    async with heal.db.write() as connection:  # ... or while it was analyzing
        (row,) = await decisions_repo.for_incident(connection, report.incident_ids[0])
        claimed = await decisions_repo.claim(
            connection, row["id"], clock.now, clock.now + timedelta(seconds=90)
        )
    assert claimed is not None
    assert claimed["state"] == "analyzing"
    assert await heal.decisions.sweep() == 0  # its lease still holds
    clock.advance(91)
    assert await heal.decisions.sweep() == 1
    await heal.decisions.drain()
    async with heal.db.read() as connection:
        decision = await decisions_repo.get(connection, row["id"])
    assert decision is not None
    assert (decision["state"], decision["runs"]) == ("ready", 2)
    # Past the budget, only the expert rules were asked, and the timeline says why.
    assert decision["tier"] == "expert"


async def test_past_its_deadline_a_decision_skips_to_the_expert_rules(
    make_heal: HealFactory, clock: Clock
) -> None:
    llm = ScriptedTier(
        TierName.LLM, TierAnswer(Proposal(TierName.LLM, "scale-up", {"replicas": 2}))
    )
    heal = await deciding_heal(make_heal, clock, llm)
    heal.ingest.on_decisions = lambda ids: None
    await heal.ingest.ingest([alert("PodCrashLooping", namespace="shop", deployment="web")])
    clock.advance(31)
    assert await heal.decisions.sweep() == 1
    await heal.decisions.drain()
    async with heal.db.read() as connection:
        decision = await decisions_repo.get(connection, 1)
    assert decision is not None
    assert decision["attempts"][0] == {
        "tier": "llm",
        "latency_ms": 0.0,
        "rejected": "not tried: the budget ran out",
    }
    assert decision["tier"] == "expert"
    assert llm.asked == []


async def test_two_processes_running_one_decision_decide_once(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await deciding_heal(make_heal, clock)
    heal.ingest.on_decisions = lambda ids: None
    await heal.ingest.ingest([alert("PodCrashLooping", namespace="shop", deployment="web")])
    results = await asyncio.gather(heal.decisions.run(1), heal.decisions.run(1))
    assert sorted(map(str, results)) == ["None", "ready"]
    async with heal.db.read() as connection:
        actions = await incidents_repo.actions_of(connection, 1)
    assert len(actions) == 1


async def test_a_policy_whose_rules_decide_needs_a_default_expert_rule() -> None:
    text = POLICY.replace("BUDGET", "30").replace(
        "    - {name: default, action: open-ticket}\n", ""
    )
    with pytest.raises(PolicyError, match=r"the last expert rule must be a default \(no match\)"):
        load_policy_text(text)
    assert isinstance(load_policy_text(POLICY.replace("BUDGET", "30")), Policy)


SCALE = ("scale-up", {"replicas": 2})
AUTO = """
approval:
  enabled: true
  auto_approve:
    - {name: trusted-playbooks, tiers: [playbook], min_lower_bound: 0.8}
    - {name: sure-llm, tiers: [llm], min_confidence: 0.9, max_risk: medium}
"""


@pytest.mark.parametrize(
    ("proposal", "approved_by"),
    [
        (
            Proposal(
                TierName.PLAYBOOK, "scale-up", {"replicas": 2}, evidence={"lower_bound": 0.86}
            ),
            "trusted-playbooks",
        ),
        (
            Proposal(TierName.PLAYBOOK, "scale-up", {"replicas": 2}, evidence={"lower_bound": 0.5}),
            None,
        ),
        (Proposal(TierName.LLM, "scale-up", {"replicas": 2}, confidence=0.95), "sure-llm"),
        (Proposal(TierName.LLM, "scale-up", {"replicas": 2}, confidence=0.7), None),
    ],
)
async def test_auto_approval_may_ask_for_a_playbooks_lower_bound_or_the_llms_confidence(
    make_heal: HealFactory, clock: Clock, proposal: Proposal, approved_by: str | None
) -> None:
    heal: Heal = await make_heal(AUTO + POLICY.replace("BUDGET", "30"), clock=clock)
    heal.decisions.clock = clock
    tier = ScriptedTier(proposal.tier, TierAnswer(proposal))
    heal.decisions.tiers = lambda policy: [tier]
    decision, entries = await decided(heal, namespace="shop", deployment="web")
    action = await action_of(heal, decision)
    if approved_by is None:
        assert action["status"] == "waiting"
    else:
        assert action["status"] == "received"
        (note,) = [m for m in said(entries, "action.status") if "auto-approved" in m]
        assert note.startswith(f"auto-approved by condition {approved_by!r}: decided by the")


async def test_the_api_and_the_cli_show_an_incidents_decision(
    make_heal: HealFactory, clock: Clock, backend: tuple[str, str]
) -> None:
    llm = ScriptedTier(
        TierName.LLM, TierAnswer(Proposal(TierName.LLM, "delete-everything", {}, confidence=0.9))
    )
    heal = await deciding_heal(make_heal, clock, llm)
    decision, _ = await decided(heal, namespace="shop", deployment="web")
    transport = httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://heal", headers=AUTH) as api:
        shown = (await api.get(f"/api/v1/incidents/{decision['incident_id']}")).json()
    (view,) = shown["decisions"]
    assert (view["state"], view["tier"], view["action_id"]) == ("ready", "expert", 1)
    assert view["attempts"][0]["rejected"].startswith("proposed 'delete-everything'")
    assert "claimed_until" not in view

    printed = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["incidents", "show", str(decision["incident_id"]), "--database-url", backend[0]],
        env={"COLUMNS": "250"},
    )
    assert printed.exit_code == 0, printed.output
    assert "Decisions (1)" in printed.output
    # the proposal column (PostgreSQL's JSONB keeps its own key order)
    assert "restart-workload(name=web, namespace=shop)" in printed.output.replace(
        "namespace=shop, name=web", "name=web, namespace=shop"
    )
    as_json = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["incidents", "show", "1", "--json", "--database-url", backend[0]],
    )
    (listed,) = json.loads(as_json.output)["decisions"]
    assert (listed["tier"], listed["proposal"]["action"]) == ("expert", "restart-workload")


async def test_people_rejecting_a_playbooks_proposal_count_against_it(
    make_heal: HealFactory, clock: Clock
) -> None:
    text = "approval: {enabled: true}\n" + POLICY.replace("BUDGET", "30")
    heal: Heal = await make_heal(text, clock=clock)
    heal.decisions.clock = heal.approvals.clock = clock
    labels = {"alertname": "PodCrashLooping", "namespace": "shop", "deployment": "web"}
    playbook_id = await playbook_support.add(
        heal.db,
        playbook_support.playbook_row(
            {**labels, "service": "checkout"},
            action="scale-up",
            params={"replicas": 3},
            runs=10,
            successes=9,
            summary="PodCrashLooping test",
        ),
    )
    decision, _ = await decided(heal, namespace="shop", deployment="web")
    assert (decision["tier"], decision["proposal"]["params"]) == ("playbook", {"replicas": 3})
    action = await action_of(heal, decision)
    assert action["status"] == "waiting"
    assert action["context"]["decision"]["playbook_id"] == playbook_id
    async with heal.db.write() as connection:
        await users_repo.add(connection, "alice", "approver", [], clock.now)
    async with heal.db.read() as connection:
        approval = await approvals_repo.for_action(connection, action["id"])
    assert approval is not None
    alice = Signer("alice", Role.parse("approver"), frozenset())
    await heal.approvals.sign(approval["id"], alice, approve=False, comment="not now")
    async with heal.db.read() as connection:
        playbook = await playbooks_repo.get(connection, playbook_id)
        final = await decisions_repo.get(connection, decision["id"])
    assert playbook is not None
    assert (playbook["rejections"], playbook["runs"]) == (1, 10)
    assert final is not None
    assert final["state"] == "completed"
