"""A policy's rules, compiled once, matched against many alerts."""

from __future__ import annotations

from dataclasses import dataclass

from heal.domain.matchers import LabelMatcher, matches_all
from heal.policy.models import Policy, Rule


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    matchers: list[LabelMatcher]


@dataclass(frozen=True, slots=True)
class Match:
    """The rule that owns the alert's incident, then every rule that acts on it."""

    owner: Rule | None
    rules: list[Rule]


class RuleSet:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._rules = [CompiledRule(rule, rule.matchers()) for rule in policy.rules]

    def match(self, labels: dict[str, str]) -> Match:
        """Rules are tried in order; the first match owns the alert, and later rules
        join only while the previous match says ``continue: true`` (as in Alertmanager)."""
        matched: list[Rule] = []
        for compiled in self._rules:
            if matches_all(compiled.matchers, labels):
                matched.append(compiled.rule)
                if not compiled.rule.continue_matching:
                    break
        return Match(owner=matched[0] if matched else None, rules=matched)

    def group_by(self, owner: Rule | None) -> list[str]:
        return owner.group_by if owner else self.policy.defaults.group_by
