"""heal deciding end to end: alerts in, the LLM (a fake OpenAI-compatible server) asked
with the knowledge base's hits, its proposal checked and its action created; a bad answer
falls through to the expert rules. Everything through heal's own wiring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HealFactory
from fakes.openai import FakeOpenAI, answer, serving_openai, slow
from helpers import Clock, alert

from heal.app import Heal
from heal.decide.knowledge import RemediationSummary, record_remediation
from heal.store import decisions_repo, incidents_repo, timeline_repo

KEY = "sk-test-llm-key-never-logged"
POLICY = """
secrets: {llm_key: {env: HEAL_TEST_LLM_KEY}}
kubernetes: {allowed_namespaces: [shop]}
actions:
  restart-workload:
    type: local
    description: restart the workload's process
    command: [echo, "restart {{ params.namespace }}/{{ params.name }}"]
    params:
      namespace: {type: string, enum_from: kubernetes.allowed_namespaces}
      name: {type: string, pattern: "^[a-z0-9-]{1,63}$"}
  open-ticket:
    type: local
    command: [echo, ticket]
decide:
  budget: BUDGET
  llm: {base_url: BASE_URL, model: "qwen2.5:7b", api_key: llm_key, anonymize_labels: [pod]}
  expert_rules:
    - {name: default, action: open-ticket}
rules:
  - name: workload-down
    match: {severity: critical}
    decide: {catalogue: [restart-workload, open-ticket]}
"""


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY)
    async with serving_openai(server):
        yield server


async def deciding(make_heal: HealFactory, clock: Clock, llm: FakeOpenAI, budget: int = 30) -> Heal:
    text = POLICY.replace("BASE_URL", llm.base_url).replace("BUDGET", str(budget))
    heal: Heal = await make_heal(text, clock=clock, environ={"HEAL_TEST_LLM_KEY": KEY})
    heal.decisions.clock = clock
    return heal


async def decide(heal: Heal) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = await heal.ingest.ingest(
        [alert("PodCrashLooping", namespace="shop", deployment="checkout", pod="checkout-7f9c")]
    )
    await heal.decisions.drain()
    async with heal.db.read() as connection:
        (decision,) = await decisions_repo.for_incident(connection, report.incident_ids[0])
        entries = await timeline_repo.for_incident(connection, report.incident_ids[0])
    return decision, entries


async def test_the_llms_proposal_becomes_the_action(
    make_heal: HealFactory, clock: Clock, llm: FakeOpenAI
) -> None:
    heal = await deciding(make_heal, clock, llm)
    async with heal.db.write() as connection:  # what heal learned from an earlier incident
        await record_remediation(
            connection,
            RemediationSummary(
                incident_id=900,  # an incident of last month
                title="PodCrashLooping (namespace=shop)",
                action="restart-workload",
                labels={"alertname": "PodCrashLooping", "namespace": "shop"},
                params={"namespace": "shop", "name": "checkout"},
                outcome="verified",
                effectiveness=5,
                seconds_to_resolve=240,
            ),
            clock.now,
        )
    llm.then(answer("restart-workload", {"namespace": "shop", "name": "checkout"}, 0.83))
    decision, entries = await decide(heal)
    assert (decision["state"], decision["tier"]) == ("ready", "llm")
    assert decision["proposal"]["confidence"] == pytest.approx(0.83)
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, decision["incident_id"])
    assert action["action_name"] == "restart-workload"
    (request,) = llm.answered
    prompt = request.prompt
    assert "checkout-7f9c" not in prompt  # the pod label was anonymized
    assert "resolved in 4 min" in prompt  # the knowledge base's hit reached the prompt
    assert request.authorization == f"Bearer {KEY}"
    assert all(KEY not in e["message"] and KEY not in str(e["data"]) for e in entries)


async def test_a_slow_llm_is_abandoned_and_the_expert_rules_decide(
    make_heal: HealFactory, clock: Clock, llm: FakeOpenAI
) -> None:
    heal = await deciding(make_heal, clock, llm, budget=1)
    llm.then(slow(10, answer("restart-workload", {"namespace": "shop", "name": "checkout"})))
    decision, entries = await decide(heal)
    assert decision["tier"] == "expert"
    assert decision["proposal"]["action"] == "open-ticket"
    tried = [a["tier"] for a in decision["attempts"]]
    assert tried == ["playbook", "llm", "expert"]
    llm_attempt = decision["attempts"][1]
    assert "rejected" in llm_attempt
    assert any(
        e["kind"] == "decision.tier" and "llm tier no proposal" in e["message"] for e in entries
    )


async def test_a_worker_indexes_the_policys_runbooks_when_it_starts(
    make_heal: HealFactory, clock: Clock, llm: FakeOpenAI, tmp_path: Path
) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "crash.md").write_text(
        "# Crash loops\n\n## Checkout crash looping\n\nRestart the checkout deployment.\n"
    )
    text = POLICY.replace("BASE_URL", llm.base_url).replace("BUDGET", "30")
    text = text.replace("decide:\n", f"decide:\n  knowledge: {{dirs: [{runbooks}]}}\n", 1)
    heal: Heal = await make_heal(text, clock=clock, worker=True, environ={"HEAL_TEST_LLM_KEY": KEY})
    assert heal.indexing is not None
    await heal.indexing
    (hit,) = await heal.tiers.knowledge.search("checkout crash", 5)
    assert (hit.kind, hit.title) == ("runbook", "Crash loops: Checkout crash looping")
