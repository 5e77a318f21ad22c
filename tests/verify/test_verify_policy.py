"""verify: and rollback: in the policy, each problem at its line:column; the effectiveness
score; what a kubernetes action's rollback is."""

from __future__ import annotations

import json

import pytest
from helpers import policy_text

from heal.domain.verification import OnIneffective, Outcome, effectiveness_score
from heal.policy.loader import PolicyError, PolicyProblem, load_policy_text
from heal.policy.models import Verify, effective_verify
from heal.policy.schema import policy_json_schema
from heal.verify.followup import next_action, rollback_of

RULE_ACTIONS = "    actions: [{action: open-ticket, signal: [firing]}]"


def _problems(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, "policy.yaml")
    return info.value.problems


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_verify_keys_load_and_the_actions_override_the_rules() -> None:
    text = policy_text(
        "http://127.0.0.1:9",
        **{
            RULE_ACTIONS: "    verify: {within: 120, on_ineffective: escalate}\n" + RULE_ACTIONS,
            "    timeout: 600\n": "    timeout: 600\n    verify: {quiet_for: 0}\n",
        },
    )
    policy = load_policy_text(text)
    rule = policy.rules[0].verify
    own = policy.actions["open-ticket"].verify
    assert effective_verify(rule, own) == Verify(
        within=120, quiet_for=0, on_ineffective=OnIneffective.ESCALATE
    )
    assert effective_verify(None, None) is None
    assert effective_verify(None, Verify()) == Verify(within=300, quiet_for=600)


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        ("{within: 5}", "at least 30"),
        ("{within: 100000}", "at most 86400"),
        ("{quiet_for: -1}", "at least 0"),
        ("{on_ineffective: panic}", "'escalate', 'rollback' or 'none'"),
        ("{within_s: 300}", "unknown key 'within_s'"),
    ],
)
def test_bad_verify_keys_are_reported_at_their_line(verify: str, message: str) -> None:
    text = policy_text(
        "http://127.0.0.1:9", **{RULE_ACTIONS: f"    verify: {verify}\n" + RULE_ACTIONS}
    )
    (problem,) = _problems(text)
    assert message in problem.message, problem
    assert problem.line == _line_of(text, "verify:")
    assert problem.path.startswith("rules[0].verify") or "verify" in problem.path


def test_a_rollback_must_name_a_defined_action() -> None:
    text = policy_text(
        "http://127.0.0.1:9",
        **{"    timeout: 600\n": "    timeout: 600\n    rollback: opne-ticket\n"},
    )
    (problem,) = _problems(text)
    assert problem.message == (
        "rollback 'opne-ticket' is not a defined action — did you mean 'open-ticket'?"
    )
    assert (problem.line, problem.column) == (
        _line_of(text, "rollback:"),
        text.splitlines()[_line_of(text, "rollback:") - 1].index("opne") + 1,
    )
    own = policy_text(
        "http://127.0.0.1:9",
        **{"    timeout: 600\n": "    timeout: 600\n    rollback: open-ticket\n"},
    )
    (problem,) = _problems(own)
    assert problem.message == "an action cannot be its own rollback"


def test_the_schema_documents_verify() -> None:
    schema = json.loads(policy_json_schema())
    verify = schema["$defs"]["Verify"]["properties"]
    assert set(verify) == {"within", "quiet_for", "on_ineffective"}
    assert all(field.get("description") for field in verify.values())


def test_the_effectiveness_score() -> None:
    assert effectiveness_score(None, None, incident_resolved=True) is None
    assert effectiveness_score(None, Outcome.PENDING, incident_resolved=False) is None
    assert effectiveness_score(None, Outcome.VERIFIED, incident_resolved=True) == 5
    assert effectiveness_score(None, Outcome.INEFFECTIVE, incident_resolved=True) == 4
    assert effectiveness_score(None, Outcome.INEFFECTIVE, incident_resolved=False) == 1
    assert effectiveness_score(None, Outcome.RELAPSED, incident_resolved=True) == 1
    assert effectiveness_score(2, Outcome.VERIFIED, incident_resolved=True) == 2
    assert effectiveness_score(5, None, incident_resolved=False) == 5


KUBE = """
kubernetes:
  clusters: {default: {in_cluster: true}}
  allowed_namespaces: [shop]
actions:
  scale-up:
    type: kubernetes
    operation: scale
    target: {kind: Deployment, namespace: shop, name: checkout}
    replicas: 4
    bounds: {min: 1, max: 8}
    verify: {within: 60}
  restart:
    type: kubernetes
    operation: restart
    target: {kind: Deployment, namespace: shop, name: checkout}
    rollback: scale-up
rules:
  - name: checkout
    match: {alertname: CheckoutDown}
    actions: [{action: restart}, {action: scale-up}]
"""


def test_a_kubernetes_action_without_rollback_rolls_its_target_back() -> None:
    policy = load_policy_text(KUBE)
    snapshot = policy.actions["scale-up"].model_dump(mode="json", by_alias=True)
    undo = rollback_of(policy, "scale-up", snapshot)
    assert not isinstance(undo, str)
    name, config = undo
    assert name == "scale-up-rollback"
    assert config.model_dump(include={"type", "operation", "target"}) == {
        "type": "kubernetes",
        "operation": "rollback",
        "target": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
    }
    assert config.verify is None  # a rollback is not itself judged by the original's verify
    declared = rollback_of(
        policy, "restart", policy.actions["restart"].model_dump(mode="json", by_alias=True)
    )
    assert declared == ("scale-up", policy.actions["scale-up"])
    assert next_action(policy.rules[0], "restart") == "scale-up"
    assert next_action(policy.rules[0], "scale-up") is None
