"""Evaluation: does a policy's deciding pick the expected action for known cases?

A case is a handful of alerts and the action (optionally its params and the tier) a good
decision picks for them. Each case becomes the incident ingest would open (the rule set's
``match`` and ``group_by``, ``incident_title``, the worst severity) and is decided by the
decision core itself (``service.build_input``, ``service.try_tiers``) with the tiers the
policy configures: what the report says is what heal would do. Cases run one after the
other, so a tier's latency is its own, not a queue's.

Case files are YAML::

    cases:
      - name: a crash-looping pod is restarted
        rule: workload-down            # optional: the first matching rule that decides
        alerts:
          - labels: {alertname: PodCrashLooping, severity: critical, namespace: shop}
            annotations: {summary: checkout restarts every minute}
        expect:
          action: restart-workload
          params: {namespace: shop}    # optional: these must equal the proposal's
          tier: llm                    # optional: the tier that must decide
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from heal.decide.service import build_input, rejections, try_tiers
from heal.decide.tiers import Tier
from heal.domain.alerts import fingerprint_of
from heal.domain.decisions import Proposal, TierAttempt, TierName
from heal.domain.incidents import incident_title, worse_severity
from heal.policy.base import StrictModel
from heal.policy.models import Policy
from heal.policy.ruleset import RuleSet

CASE_SUFFIXES = (".yaml", ".yml")


class CaseAlert(StrictModel):
    """One alert of a case, as Alertmanager would send it (firing)."""

    labels: Annotated[dict[str, str], Field(min_length=1)]
    """The alert's labels; ``alertname`` and ``severity`` as usual."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Its annotations (summary, description, runbook_url)."""


class Expectation(StrictModel):
    """What a good decision proposes for the case."""

    action: str
    """The action, by name."""
    params: dict[str, Any] | None = None
    """Params the proposal must carry with exactly these values (others are not looked at);
    unset: any."""
    tier: TierName | None = None
    """The tier that must decide (playbook, llm, expert); unset: any."""


class Case(StrictModel):
    """One evaluation case: alerts in, the expected proposal out."""

    name: str
    """What the case is about, shown in the report."""
    rule: str | None = None
    """The deciding rule; unset: the first rule with ``decide:`` the first alert matches."""
    alerts: Annotated[list[CaseAlert], Field(min_length=1)]
    """The incident's alerts; the first one opens the decision."""
    expect: Expectation
    """The expected proposal."""


class CaseFile(StrictModel):
    """A file of cases."""

    cases: Annotated[list[Case], Field(min_length=1)]
    """The cases, run in order."""


class CasesError(Exception):
    """A case file that cannot be read: one line, naming the file and where."""


@dataclass(frozen=True, slots=True)
class LoadedCase:
    case: Case
    source: str  # "cases/crash.yaml#2"


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    source: str
    expected: Expectation
    passed: bool
    problem: str | None  # why it failed, in words
    proposal: Proposal | None
    attempts: Sequence[TierAttempt]
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        proposal = self.proposal
        return {
            "name": self.name,
            "source": self.source,
            "passed": self.passed,
            "problem": self.problem,
            "expected": self.expected.model_dump(mode="json", exclude_none=True),
            "proposed": None
            if proposal is None
            else {
                "tier": proposal.tier.value,
                "action": proposal.action,
                "params": proposal.params,
                "confidence": proposal.confidence,
                "rationale": proposal.rationale,
            },
            "attempts": [a.as_record() for a in self.attempts],
            "latency_ms": round(self.latency_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class TierStats:
    """One tier over the cases: how often it was asked and won, how long it took when
    asked (``p50_ms``, ``p95_ms``) and how long the decisions it won took in all."""

    tier: str
    tried: int
    won: int
    p50_ms: float | None
    p95_ms: float | None
    decision_p50_ms: float | None
    decision_p95_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "tried": self.tried,
            "won": self.won,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "decision_p50_ms": self.decision_p50_ms,
            "decision_p95_ms": self.decision_p95_ms,
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    results: Sequence[CaseResult]
    tiers: Sequence[TierStats]
    p50_ms: float | None  # every decision's latency
    p95_ms: float | None

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.results) if self.results else 0.0

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": len(self.results),
            "passed": self.passed,
            "pass_rate": round(self.pass_rate, 4),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "tiers": [t.as_dict() for t in self.tiers],
            "results": [r.as_dict() for r in self.results],
        }


def case_files(path: Path) -> list[Path]:
    """The case files at ``path``: itself, or the YAML files under it, sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CasesError(f"{path}: no such file or directory")
    found = sorted(p for p in path.rglob("*") if p.suffix in CASE_SUFFIXES and p.is_file())
    found = [p for p in found if _holds_cases(p)]
    if not found:
        raise CasesError(f"{path}: no case files (YAML with a top-level cases: list)")
    return found


def _holds_cases(path: Path) -> bool:
    """A directory of cases may hold their policy too: only files with ``cases:`` count."""
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (YAMLError, OSError, UnicodeDecodeError):
        return True  # reported by load_cases, with the reason
    return isinstance(data, dict) and "cases" in data


def load_cases(paths: Iterable[Path]) -> list[LoadedCase]:
    loaded: list[LoadedCase] = []
    for path in paths:
        try:
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CasesError(f"{path}: cannot read: {exc}") from None
        except YAMLError as exc:
            raise CasesError(f"{path}: not valid YAML: {_first_line(exc)}") from None
        try:
            parsed = CaseFile.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "(top)"
            raise CasesError(f"{path}: {where}: {error['msg']}") from None
        loaded.extend(LoadedCase(c, f"{path}#{i}") for i, c in enumerate(parsed.cases, 1))
    return loaded


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


async def evaluate(
    policy: Policy,
    tiers: Sequence[Tier],
    cases: Sequence[LoadedCase],
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Decide every case with ``policy`` and ``tiers``, and compare."""
    ruleset = RuleSet(policy)
    at = now or datetime.now(UTC)
    results: list[CaseResult] = []
    for number, loaded in enumerate(cases, 1):
        results.append(await _run(ruleset, tiers, loaded, number, at))
        if progress is not None:
            progress(number, len(cases))
    return EvalReport(results, _tier_stats(results), *_p50_p95([r.latency_ms for r in results]))


async def _run(
    ruleset: RuleSet, tiers: Sequence[Tier], loaded: LoadedCase, number: int, at: datetime
) -> CaseResult:
    case = loaded.case
    policy = ruleset.policy

    def failed(problem: str) -> CaseResult:
        return CaseResult(case.name, loaded.source, case.expect, False, problem, None, [], 0.0)

    first = dict(case.alerts[0].labels)
    match = ruleset.match(first)
    rule_name = case.rule or next((r.name for r in match.rules if r.decide is not None), None)
    if rule_name is None:
        return failed("no rule with decide: matches the first alert")
    group_by = ruleset.group_by(match.owner)
    severity: str | None = None
    for alert in case.alerts:
        severity = worse_severity(severity, alert.labels.get("severity"))
    incident = {
        "id": number,
        "title": incident_title(group_by, first),
        "severity": severity,
        "group_labels": {k: first.get(k, "") for k in group_by},
        "rule": match.owner.name if match.owner else None,
        "opened_at": at,
        "status": "open",
    }
    rows = [_alert_row(alert, number * 1000 + i, at) for i, alert in enumerate(case.alerts)]
    request = build_input(number, rule_name, incident, rows, rows[0]["id"], policy)
    if isinstance(request, str):
        return failed(request)
    began = time.monotonic()
    attempts, winner = await try_tiers(tiers, request, began + policy.decide.budget)
    latency = (time.monotonic() - began) * 1000
    problem = _mismatch(case.expect, winner, attempts)
    return CaseResult(
        case.name, loaded.source, case.expect, problem is None, problem, winner, attempts, latency
    )


def _alert_row(alert: CaseAlert, alert_id: int, at: datetime) -> dict[str, Any]:
    """The alert as its stored row would be (what ``build_input`` reads)."""
    return {
        "id": alert_id,
        "fingerprint": fingerprint_of(alert.labels),
        "status": "firing",
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "starts_at": at,
        "generator_url": None,
    }


def _mismatch(
    expected: Expectation, winner: Proposal | None, attempts: Sequence[TierAttempt]
) -> str | None:
    """Why the proposal is not the expected one, or None when it is."""
    if winner is None:
        return f"no tier proposed an allowed action ({rejections(attempts)})"
    problems: list[str] = []
    if winner.action != expected.action:
        problems.append(f"proposed {winner.action!r}, expected {expected.action!r}")
    for key, value in (expected.params or {}).items():
        if key not in winner.params:
            problems.append(f"param {key!r} missing, expected {value!r}")
        elif winner.params[key] != value:
            problems.append(f"param {key!r} is {winner.params[key]!r}, expected {value!r}")
    if expected.tier is not None and winner.tier is not expected.tier:
        problems.append(f"decided by the {winner.tier.value} tier, expected {expected.tier.value}")
    return "; ".join(problems) or None


def _tier_stats(results: Sequence[CaseResult]) -> list[TierStats]:
    asked: dict[str, list[float]] = {}
    won: dict[str, list[float]] = {}
    for result in results:
        for attempt in result.attempts:
            if attempt.rejected and attempt.rejected.startswith("not tried"):
                continue
            asked.setdefault(attempt.tier.value, []).append(attempt.latency_ms)
        if result.proposal is not None:
            won.setdefault(result.proposal.tier.value, []).append(result.latency_ms)
    order = [t.value for t in TierName]
    stats = []
    for tier in sorted(asked, key=lambda t: order.index(t) if t in order else len(order)):
        p50, p95 = _p50_p95(asked[tier])
        d50, d95 = _p50_p95(won.get(tier, []))
        stats.append(TierStats(tier, len(asked[tier]), len(won.get(tier, [])), p50, p95, d50, d95))
    return stats


def _p50_p95(values: Sequence[float]) -> tuple[float | None, float | None]:
    return percentile(values, 50), percentile(values, 95)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (a value that was measured), rounded to 0.1 ms."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)
