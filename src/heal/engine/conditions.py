"""``finished_rule`` / ``success_rule`` evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heal.policy.expressions import search
from heal.policy.models import Condition, ConditionMethod


def holds(condition: Condition, outputs: Mapping[str, Any]) -> bool:
    actual = search(condition.key, outputs)
    method = condition.method
    if method is ConditionMethod.EQUAL:
        return bool(actual == condition.value)
    if method is ConditionMethod.NOT_EQUAL:
        return bool(actual != condition.value)
    if method is ConditionMethod.IN:
        return actual in condition.value
    if method is ConditionMethod.NOT_IN:
        return actual not in condition.value
    if method is ConditionMethod.EXISTS:
        return actual is not None
    raise AssertionError(f"unhandled condition method {method}")


def describe(condition: Condition, outputs: Mapping[str, Any]) -> str:
    actual = search(condition.key, outputs)
    expected = "" if condition.method is ConditionMethod.EXISTS else f" {condition.value!r}"
    return f"{condition.key} {condition.method.value}{expected} (got {actual!r})"
