"""The governors' policy keys: loaded as written, refused with their line and column when
out of bounds, when a template does not compile, or when target_key reads what it cannot."""

from __future__ import annotations

import pytest
from governed import governed

from heal.policy.loader import PolicyError, PolicyProblem, load_policy_text


def _problems(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, "policy.yaml")
    return info.value.problems


def _at(text: str, needle: str) -> tuple[int, int]:
    index = text.index(needle)
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


def test_every_key_loads() -> None:
    text = governed(
        "concurrency: {max: 2, policy: cancel}\n    limits: [{max: 3, per: 3600}]\n"
        "    breaker: {failures: 4, within: 600, cooldown: 900}",
        "governors:\n  budget: {max: 50, per: 3600, over: block}\n",
    )
    policy = load_policy_text(text)
    action = policy.actions["restart"]
    assert action.target_key == "{{ alert.labels.namespace }}/{{ alert.labels.deployment }}"
    assert action.concurrency is not None
    assert (action.concurrency.max, action.concurrency.policy) == (2, "cancel")
    assert [(limit.max, limit.per, limit.over) for limit in action.limits] == [(3, 3600, "approve")]
    assert action.breaker is not None
    assert (action.breaker.failures, action.breaker.cooldown) == (4, 900)
    assert policy.governors.budget is not None
    assert policy.governors.budget.over == "block"


@pytest.mark.parametrize(
    ("keys", "needle", "path"),
    [
        ("concurrency: {max: 0}", "max: 0", "actions.restart.concurrency.max"),
        ("concurrency: {policy: queue}", "policy: queue", "actions.restart.concurrency.policy"),
        ("limits: [{max: 3, per: 0}]", "per: 0", "actions.restart.limits.0.per"),
        ("limits: [{max: 3}]", "{max: 3}", "actions.restart.limits.0.per"),
        ("breaker: {failures: 0}", "failures: 0", "actions.restart.breaker.failures"),
        ("breaker: {colldown: 5}", "colldown", "actions.restart.breaker.colldown"),
    ],
)
def test_a_bad_value_is_reported_at_its_key(keys: str, needle: str, path: str) -> None:
    text = governed(keys)
    [problem] = _problems(text)
    assert problem.path == path
    assert (problem.line, problem.column) == _at(text, needle)


def test_a_bad_budget_is_reported_at_its_key() -> None:
    text = governed("", "governors:\n  budget: {max: 5, over: ask}\n")
    [problem] = _problems(text)
    assert problem.path == "governors.budget.over"
    assert (problem.line, problem.column) == _at(text, "over: ask")


def test_a_target_key_must_compile() -> None:
    text = governed("").replace("/{{ alert.labels.deployment }}", "/{{ alert.labels. }}")
    [problem] = _problems(text)
    assert problem.path == "actions.restart.target_key"
    assert problem.line == _at(text, "target_key")[0]


def test_a_target_key_reads_only_what_exists_at_creation() -> None:
    text = governed("").replace("/{{ alert.labels.deployment }}", "/{{ outputs.name }}")
    [problem] = _problems(text)
    assert problem.path == "actions.restart.target_key"
    assert "'outputs' is only available in nodes" in problem.message
