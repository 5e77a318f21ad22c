"""The LLM tier against a fake OpenAI-compatible server: every way an answer can go wrong
ends in no proposal with the precise reason (so the next tier runs), and a good answer in
a checked proposal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.openai import (
    FakeOpenAI,
    Reply,
    answer,
    error,
    serving_openai,
    slow,
    text,
)
from log_capture import captured_logs
from ruamel.yaml import YAML

from heal.decide.llm import LlmTier
from heal.decide.tiers import DecisionInput, KnowledgeHit, TierAnswer
from heal.domain.decisions import TierName
from heal.policy.decide import DecideSettings
from heal.policy.loader import load_policy_text
from heal.policy.models import Policy

KEY = "sk-test-4f9a8b7c6d5e4f3a2b1c"
POD = "checkout-7d9f8b-x2x9q"
INSTANCE = "10.0.3.17:8080"
CATALOGUE = "restart-workload, collect-logs, open-ticket"

POLICY = """
secrets:
  llm_key: {env: HEAL_TEST_LLM_KEY}
kubernetes:
  clusters: {default: {in_cluster: true}}
  allowed_namespaces: [shop, payments]
decide:
  llm:
    base_url: http://127.0.0.1:9/v1
    model: qwen2.5:7b
    api_key: llm_key
    timeout: 5
    consensus: {severities: [critical], samples: 3, agree: 2}
    anonymize_labels: [instance, pod]
  expert_rules:
    - {name: default, action: open-ticket}
actions:
  restart-workload:
    type: kubernetes
    operation: restart
    description: Restart the workload's pods, one at a time.
    params:
      namespace: {type: string, enum_from: kubernetes.allowed_namespaces}
      name: {type: string, pattern: "^[a-z0-9-]{1,63}$"}
    target: {kind: Deployment, namespace: "{{ params.namespace }}", name: "{{ params.name }}"}
  collect-logs:
    type: local
    command: [/usr/bin/true]
    risk: low
    description: Save the pod's logs on the incident.
    params:
      pod: {type: string, pattern: "^[a-z0-9-]{1,63}$"}
      lines: {type: integer, minimum: 10, maximum: 5000, default: 500, required: false}
  open-ticket:
    type: local
    command: [/usr/bin/true]
    risk: low
rules:
  - name: workload-down
    match: {severity: "=~critical|warning"}
    decide: {catalogue: [restart-workload, collect-logs, open-ticket]}
"""

RESTART = {"namespace": "shop", "name": "checkout"}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy_text(POLICY)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY)
    async with serving_openai(server):
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


class Knowledge:
    """A knowledge base that finds what it is given, after ``delay`` seconds."""

    def __init__(self, hits: list[KnowledgeHit], delay: float = 0.0) -> None:
        self.hits = hits
        self.delay = delay
        self.queries: list[tuple[str, int]] = []

    async def search(self, query: str, limit: int) -> list[KnowledgeHit]:
        self.queries.append((query, limit))
        await asyncio.sleep(self.delay)
        return self.hits[:limit]


def make_tier(
    policy: Policy,
    fake: FakeOpenAI,
    client: httpx.AsyncClient,
    *,
    key: str = KEY,
    knowledge: Knowledge | None = None,
    context_timeout: float = 5.0,
    **changes: Any,
) -> LlmTier:
    assert policy.decide.llm is not None
    settings = policy.decide.llm.model_copy(update={"base_url": fake.base_url, **changes})
    return LlmTier(
        settings,
        secrets={"llm_key": key},
        client=client,
        knowledge=knowledge,
        context_timeout=context_timeout,
        retry_base=0.01,
    )


def request_for(policy: Policy, severity: str = "warning") -> DecisionInput:
    rule = policy.rules[0]
    assert rule.decide is not None
    labels = {
        "alertname": "KubePodCrashLooping",
        "severity": severity,
        "namespace": "shop",
        "deployment": "checkout",
        "pod": POD,
        "instance": INSTANCE,
    }
    alert = {
        "name": "KubePodCrashLooping",
        "labels": labels,
        "annotations": {"summary": f"Pod {POD} is crash looping on {INSTANCE}"},
        "status": "firing",
        "starts_at": "2026-01-01T11:59:00+00:00",
    }
    return DecisionInput(
        decision_id=1,
        incident={"id": 7, "title": f"KubePodCrashLooping {POD}", "severity": severity},
        alerts=[alert],
        rule=rule,
        catalogue={name: policy.actions[name] for name in rule.decide.catalogue},
        policy=policy,
    )


async def propose(tier: LlmTier, request: DecisionInput, within: float = 5.0) -> TierAnswer:
    return await tier.propose(request, time.monotonic() + within)


# --- a good answer -------------------------------------------------------------------------
async def test_a_good_answer_is_a_checked_proposal(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(answer("restart-workload", RESTART, 0.82, "the pods crash; a restart clears it"))
    result = await propose(make_tier(policy, fake, client), request_for(policy))

    assert result.reason is None
    assert result.proposal is not None
    assert result.proposal.tier is TierName.LLM
    assert result.proposal.action == "restart-workload"
    assert result.proposal.params == RESTART
    assert result.proposal.confidence == 0.82
    assert result.proposal.rationale == "the pods crash; a restart clears it"
    assert result.proposal.evidence == {"model": "qwen2.5:7b", "samples": 1, "agreeing": 1}
    assert result.notes["attempts"] == 1
    assert result.notes["usage"]["total_tokens"] > 0
    assert result.notes["latency_ms"] >= 0
    assert result.notes["response_format"] == "json_schema"


async def test_the_request_asks_for_strict_structured_output_with_the_catalogue(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(answer("open-ticket", {}))
    await propose(make_tier(policy, fake, client), request_for(policy))

    [sent] = fake.answered  # the fake took the strict schema as OpenAI would
    body = sent.body
    assert body["model"] == "qwen2.5:7b"
    assert body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "choose ONE remediation" in body["messages"][0]["content"]
    spec = body["response_format"]["json_schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert spec["strict"] is True
    assert spec["schema"]["properties"]["action"]["enum"] == CATALOGUE.split(", ")
    user = body["messages"][1]["content"]
    catalogue = json.loads(user.split("## Catalogue (choose one)\n")[1].split("\n\n")[0])
    restart = catalogue[0]
    assert [entry["name"] for entry in catalogue] == CATALOGUE.split(", ")
    assert restart["type"] == "kubernetes"
    assert restart["risk"] == "medium"
    assert restart["description"] == "Restart the workload's pods, one at a time."
    assert restart["params"]["properties"]["namespace"]["enum"] == ["shop", "payments"]
    assert restart["params"]["properties"]["name"]["pattern"] == "^[a-z0-9-]{1,63}$"
    assert restart["params"]["required"] == ["namespace", "name"]


# --- the server does not do structured output --------------------------------------------
async def test_a_server_refusing_json_schema_is_asked_again_for_plain_json(
    policy: Policy, client: httpx.AsyncClient
) -> None:
    fenced = "```json\n" + json.dumps({"action": "open-ticket", "confidence": 0.4}) + "\n```"
    server = FakeOpenAI(api_key=KEY, accepts=frozenset({"text"}))
    async with serving_openai(server):
        server.then(text(fenced), text(fenced))
        tier = make_tier(policy, server, client)

        first = await propose(tier, request_for(policy))
        second = await propose(tier, request_for(policy))

    assert first.proposal is not None
    assert first.proposal.action == "open-ticket"
    assert first.proposal.confidence == 0.4
    assert first.notes["response_format"] == "plain JSON (the server refused json_schema)"
    assert second.proposal is not None
    # Refused once, then never offered again by this tier.
    assert [r.response_format for r in server.requests] == ["json_schema", None, None]
    assert [r.valid for r in server.requests] == [False, True, True]


# --- retries -----------------------------------------------------------------------------
async def test_a_429_is_retried_after_retry_after(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(error(429, retry_after="0"), answer("restart-workload", RESTART))
    result = await propose(make_tier(policy, fake, client), request_for(policy))

    assert result.proposal is not None
    assert result.proposal.action == "restart-workload"
    assert result.notes["attempts"] == 2
    assert len(fake.requests) == 2


async def test_a_retry_after_past_the_deadline_gives_up_at_once(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(error(429, retry_after="60"), answer("restart-workload", RESTART))
    result = await propose(make_tier(policy, fake, client), request_for(policy))

    assert result.proposal is None
    assert result.reason is not None
    assert result.reason.startswith(
        "HTTP 429 from the LLM: Rate limit reached for requests. Please try again later.; "
        "retrying in 60 s would pass the deadline"
    )
    assert len(fake.requests) == 1


async def test_a_server_error_that_persists_ends_with_its_message(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(error(500), error(500), error(500), answer("open-ticket"))
    result = await propose(make_tier(policy, fake, client), request_for(policy))

    assert result.proposal is None
    assert result.reason == (
        "HTTP 500 from the LLM: The server had an error while processing your request. "
        "Sorry about that! (3 attempts)"
    )
    assert len(fake.requests) == 3


async def test_a_500_then_a_good_answer_wins(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(error(503), answer("open-ticket", {}))
    result = await propose(make_tier(policy, fake, client), request_for(policy))
    assert result.proposal is not None
    assert result.proposal.action == "open-ticket"


async def test_a_wrong_api_key_is_refused_without_retrying(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    result = await propose(
        make_tier(policy, fake, client, key="sk-wrong-0000"), request_for(policy)
    )
    assert result.proposal is None
    assert result.reason == "the LLM endpoint refused the API key (HTTP 401)"
    assert len(fake.requests) == 0  # refused before the body was even read


async def test_an_unknown_model_is_refused_with_the_servers_words(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    result = await propose(make_tier(policy, fake, client, model="gpt-9"), request_for(policy))
    assert result.reason == (
        "the LLM endpoint refused the request (HTTP 404): The model `gpt-9` does not exist "
        "or you do not have access to it."
    )


async def test_an_unreachable_endpoint_is_tried_three_times(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    assert policy.decide.llm is not None
    settings = policy.decide.llm.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})
    tier = LlmTier(settings, secrets={"llm_key": KEY}, client=client, retry_base=0.01)
    result = await propose(tier, request_for(policy))
    assert result.reason == (
        "cannot reach the LLM at http://127.0.0.1:9/v1/chat/completions (ConnectError) (3 attempts)"
    )
    assert result.notes["attempts"] == 3


# --- time --------------------------------------------------------------------------------
async def test_a_slow_answer_past_the_deadline_is_abandoned(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(slow(30, answer("restart-workload", RESTART)))
    result = await propose(make_tier(policy, fake, client), request_for(policy), within=0.3)

    assert result.proposal is None
    assert result.reason is not None
    assert result.reason.startswith("the LLM did not answer within 0.")


async def test_the_settings_timeout_cuts_a_longer_budget_short(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(slow(30))
    tier = make_tier(policy, fake, client, timeout=0.3)
    result = await propose(tier, request_for(policy), within=30)
    assert result.reason is not None
    assert result.reason.startswith("the LLM did not answer within 0.3 s")


async def test_a_deadline_already_past_asks_nothing(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    result = await propose(make_tier(policy, fake, client), request_for(policy), within=-1)
    assert result.reason == "no time was left for the LLM (the decision's deadline had passed)"
    assert fake.requests == []


# --- answers that cannot be proposals ----------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        pytest.param(
            text('{"action": "restart-workload", "params": {"namespace": '),
            "the LLM's answer is not JSON (Expecting value: line 1 column 55 (char 54)): "
            '\'{"action": "restart-workload", "params": {"namespace":\'',
            id="malformed-json",
        ),
        pytest.param(
            text("I would restart the deployment."),
            "the LLM's answer is not JSON (Expecting value: line 1 column 1 (char 0)): "
            "'I would restart the deployment.'",
            id="prose",
        ),
        pytest.param(
            text('["restart-workload"]'),
            "the LLM's answer is a list, not a JSON object",
            id="not-an-object",
        ),
        pytest.param(
            answer("delete-namespace", {"namespace": "shop"}),
            f"the LLM proposed 'delete-namespace', which is not in the catalogue ({CATALOGUE})",
            id="hallucinated-action",
        ),
        pytest.param(
            answer("restart-workload", {"namespace": "kube-system", "name": "checkout"}),
            "params rejected: param 'namespace': 'kube-system' is not allowed by "
            "kubernetes.allowed_namespaces",
            id="namespace-not-allowed",
        ),
        pytest.param(
            answer("restart-workload", {**RESTART, "force": True}),
            "params rejected: unknown params: 'force'",
            id="undeclared-param",
        ),
        pytest.param(
            answer("collect-logs", {"pod": "checkout", "lines": 10**6}),
            "params rejected: param 'lines': 1000000 is above 5000.0",
            id="out-of-bounds",
        ),
        pytest.param(
            answer("restart-workload", {"namespace": "shop"}),
            "params rejected: param 'name' is required",
            id="missing-param",
        ),
        pytest.param(
            answer("restart-workload", {"namespace": "shop", "name": "web; rm -rf /"}),
            "params rejected: param 'name': 'web; rm -rf /' does not match pattern "
            "'^[a-z0-9-]{1,63}$'",
            id="shell-command-in-params",
        ),
        pytest.param(
            answer("restart-workload", RESTART, confidence=1.5),
            "confidence must be a number from 0 to 1, not 1.5",
            id="confidence-above-1",
        ),
        pytest.param(
            answer("restart-workload", RESTART, confidence="high"),
            'confidence must be a number from 0 to 1, not "high"',
            id="confidence-not-a-number",
        ),
        pytest.param(
            Reply(content='{"action": "restart-workload", "par', finish_reason="length"),
            "the LLM's answer was cut off at max_tokens (1024)",
            id="cut-off",
        ),
        pytest.param(
            Reply(content=None, refusal="I can't help with that."),
            "the LLM refused to answer: I can't help with that.",
            id="refusal",
        ),
    ],
)
async def test_an_answer_that_cannot_be_a_proposal_says_why(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient, reply: Reply, reason: str
) -> None:
    fake.then(reply)
    result = await propose(make_tier(policy, fake, client), request_for(policy))
    assert result.proposal is None
    assert result.reason == reason


# --- kubectl lines -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply",
    [
        answer(
            kubectl="kubectl rollout restart deployment/checkout -n shop",
            confidence=0.7,
        ),
        answer("kubectl rollout restart deploy/checkout --namespace=shop", confidence=0.7),
    ],
    ids=["kubectl-key", "kubectl-as-action"],
)
async def test_a_kubectl_line_maps_to_the_catalogue_action_doing_that(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient, reply: Reply
) -> None:
    fake.then(reply)
    result = await propose(make_tier(policy, fake, client), request_for(policy))

    assert result.reason is None
    assert result.proposal is not None
    assert result.proposal.action == "restart-workload"
    assert result.proposal.params == RESTART
    assert result.proposal.evidence["kubectl"].startswith("kubectl rollout restart")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            "kubectl rollout restart deployment/checkout -n shop; kubectl delete ns shop",
            "the LLM's kubectl line is refused: shell metacharacter ';' is not allowed: "
            "no shell runs this",
        ),
        (
            "kubectl delete namespace shop",
            "the LLM's kubectl line is refused: kubectl delete namespace is not allowed: only "
            "rollout restart, rollout undo and scale are",
        ),
        (
            "kubectl scale deployment/checkout --replicas=5 -n shop",
            "the LLM's kubectl line (scale of Deployment shop/checkout) matches no catalogue "
            f"action: none of ({CATALOGUE}) is a kubernetes scale of a Deployment",
        ),
        (
            "kubectl rollout restart deployment/checkout -n kube-system",
            "the LLM's kubectl line (restart of Deployment kube-system/checkout) fits no "
            "catalogue action (restart-workload: params rejected: param 'namespace': "
            "'kube-system' is not allowed by kubernetes.allowed_namespaces)",
        ),
    ],
    ids=["shell", "other-verb", "no-such-action", "namespace-not-allowed"],
)
async def test_a_kubectl_line_that_maps_to_nothing_allowed_is_refused(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient, line: str, reason: str
) -> None:
    fake.then(answer(kubectl=line))
    result = await propose(make_tier(policy, fake, client), request_for(policy))
    assert result.proposal is None
    assert result.reason == reason


# --- consensus ---------------------------------------------------------------------------
async def test_consensus_wins_when_enough_answers_agree(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(
        answer("restart-workload", RESTART, 0.9),
        answer("open-ticket", {}, 0.5),
        answer("restart-workload", RESTART, 0.7),
    )
    result = await propose(make_tier(policy, fake, client), request_for(policy, "critical"))

    assert result.reason is None
    assert result.proposal is not None
    assert result.proposal.action == "restart-workload"
    assert result.proposal.confidence == pytest.approx(0.8)
    assert result.proposal.evidence == {"model": "qwen2.5:7b", "samples": 3, "agreeing": 2}
    assert len(fake.answered) == 3
    assert sorted(v["count"] for v in result.notes["votes"]) == [1, 2]


async def test_no_consensus_when_answers_disagree(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(
        answer("restart-workload", RESTART, 0.9),
        answer("restart-workload", {"namespace": "payments", "name": "checkout"}, 0.9),
        answer("delete-namespace", {}, 0.9),
    )
    result = await propose(make_tier(policy, fake, client), request_for(policy, "critical"))

    assert result.proposal is None
    assert result.reason is not None
    assert result.reason.startswith(
        "no consensus: at most 1 of 3 answers name the same action and params, 2 needed ("
    )
    assert "restart-workload (name=checkout, namespace=shop) x1" in result.reason
    assert "restart-workload (name=checkout, namespace=payments) x1" in result.reason
    assert "1 rejected: the LLM proposed 'delete-namespace'" in result.reason
    assert len(result.notes["votes"]) == 2


async def test_a_severity_outside_consensus_asks_once(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.responder = lambda _body: answer("open-ticket", {})
    result = await propose(make_tier(policy, fake, client), request_for(policy, "warning"))
    assert result.proposal is not None
    assert len(fake.requests) == 1


# --- what leaves heal --------------------------------------------------------------------
def _echo_placeholder(body: dict[str, Any]) -> Reply:
    """A model that names the pod the way it was shown it."""
    prompt = body["messages"][1]["content"]
    shown = "<pod-1>" if "<pod-1>" in prompt else POD
    return answer("collect-logs", {"pod": shown}, 0.6, f"logs of {shown} tell why it crashes")


async def test_anonymized_labels_never_leave_heal_and_are_mapped_back(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    hits = [
        KnowledgeHit(
            "remediation",
            "CrashLoop in checkout",
            f"Restarted after {POD} on {INSTANCE} ran out of memory",
            0.9,
            "incident 3",
        )
    ]
    fake.responder = _echo_placeholder
    tier = make_tier(policy, fake, client, knowledge=Knowledge(hits))
    result = await propose(tier, request_for(policy))

    [sent] = fake.answered
    wire = json.dumps(sent.body)
    assert POD not in wire
    assert INSTANCE not in wire
    assert "<pod-1>" in sent.prompt
    assert "<instance-1>" in sent.prompt
    assert "CrashLoop in checkout" in sent.prompt  # the knowledge hit went along, hidden
    assert result.proposal is not None
    assert result.proposal.params == {"pod": POD, "lines": 500}
    assert result.proposal.rationale == f"logs of {POD} tell why it crashes"
    assert result.notes["anonymized"] == 2


async def test_a_slow_knowledge_base_is_left_out_of_the_prompt(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    hits = [KnowledgeHit("runbook", "Crash loops", "restart it", 0.5, "runbooks/crash.md")]
    knowledge = Knowledge(hits, delay=10)
    fake.then(answer("open-ticket", {}))
    tier = make_tier(policy, fake, client, knowledge=knowledge, context_timeout=0.1)
    result = await propose(tier, request_for(policy))

    assert result.proposal is not None
    assert result.notes["knowledge"] == (
        "the knowledge search took over 0.1 s; the prompt went without"
    )
    assert "Crash loops" not in fake.answered[0].prompt
    assert knowledge.queries == [
        ("KubePodCrashLooping shop checkout " + f"Pod {POD} is crash looping on {INSTANCE}", 3)
    ]


async def test_the_api_key_is_sent_as_a_bearer_token_and_never_logged(
    policy: Policy, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.then(error(500), answer("open-ticket", {}), error(400, f"bad key {KEY} here"))
    tier = make_tier(policy, fake, client)
    with captured_logs() as logs:
        good = await propose(tier, request_for(policy))
        bad = await propose(tier, request_for(policy))
        wrong = await propose(make_tier(policy, fake, client, key=KEY[:-1]), request_for(policy))

    assert {r.authorization for r in fake.requests} == {f"Bearer {KEY}"}
    assert good.proposal is not None
    assert bad.reason == "the LLM endpoint refused the request (HTTP 400): bad key *** here"
    assert wrong.reason == "the LLM endpoint refused the API key (HTTP 401)"
    assert len(logs.lines("llm tier answered")) == 3
    recorded = logs.text + json.dumps([good.notes, bad.notes, wrong.notes, bad.reason])
    assert KEY not in recorded
    assert KEY[:-1] not in recorded


# --- the fake speaks OpenAI's contract ---------------------------------------------------
async def test_the_fake_refuses_what_openai_refuses(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    url = f"{fake.base_url}/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    loose = {
        "type": "json_schema",
        "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}},
    }
    base = {"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "hi"}]}

    no_json_word = await client.post(
        url, json={**base, "response_format": {"type": "json_object"}}, headers=auth
    )
    not_strict = await client.post(url, json={**base, "response_format": loose}, headers=auth)
    no_messages = await client.post(url, json={"model": "qwen2.5:7b"}, headers=auth)

    assert no_json_word.status_code == 400
    assert no_json_word.json()["error"]["message"].startswith("'messages' must contain")
    assert not_strict.status_code == 400
    assert not_strict.json()["error"] == {
        "message": "Invalid schema for response_format 'x': In context=(), "
        "'additionalProperties' is required to be supplied and to be false.",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }
    assert no_messages.json()["error"]["param"] == "messages"
    assert fake.answered == []


# --- built from the policy ---------------------------------------------------------------
async def test_the_tier_is_built_from_the_policy_and_its_secret(
    policy: Policy, client: httpx.AsyncClient
) -> None:
    tier = LlmTier.from_policy(policy, secrets={"llm_key": KEY}, client=client)
    assert tier is not None
    assert tier.url == "http://127.0.0.1:9/v1/chat/completions"
    assert tier.context_timeout == policy.decide.knowledge.context_timeout
    without = policy.model_copy(update={"decide": policy.decide.model_copy(update={"llm": None})})
    assert LlmTier.from_policy(without, secrets={}, client=client) is None
    with pytest.raises(ValueError, match="names the secret 'llm_key', which has no value"):
        LlmTier.from_policy(policy, secrets={}, client=client)


def test_the_documented_settings_are_valid() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "deciding.md").read_text()
    section = doc.split("## The LLM tier")[1]
    block = section.split("```yaml\n")[1].split("```")[0]
    data = YAML(typ="safe").load(block)
    decide = DecideSettings.model_validate(data["decide"])
    assert decide.llm is not None
    assert decide.llm.api_key in data["secrets"]
    assert decide.llm.consensus is not None
    assert decide.llm.anonymize_labels == ["instance", "pod"]
