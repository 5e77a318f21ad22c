"""Prometheus-style label matchers: ``=``, ``!=``, ``=~``, ``!~``.

A policy writes ``severity: "=~critical|page"``; a bare value means equality. Regular
expressions are fully anchored, as in Prometheus and Alertmanager.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    name: str
    op: MatchOp
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, name: str, spec: str) -> LabelMatcher:
        """Parse ``spec`` (e.g. ``"=~a|b"``); raises ``ValueError`` for a bad regex."""
        for op in (MatchOp.RE, MatchOp.NRE, MatchOp.NE, MatchOp.EQ):
            if spec.startswith(op.value):
                value = spec[len(op.value) :]
                break
        else:
            op, value = MatchOp.EQ, spec
        pattern = None
        if op in (MatchOp.RE, MatchOp.NRE):
            try:
                # fullmatch anchors the whole pattern, alternations included, and leaves
                # leading inline flags such as (?i) legal, as Prometheus allows them.
                pattern = re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return cls(name=name, op=op, value=value, pattern=pattern)

    def matches(self, labels: dict[str, str]) -> bool:
        # A missing label matches as the empty string, as in Prometheus.
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op is MatchOp.RE else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{self.value!r}"


def matches_all(matchers: list[LabelMatcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
