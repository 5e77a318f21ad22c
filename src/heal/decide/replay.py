"""Replay: stored alerts run again through a policy's rules, governors and decisions,
nothing executed and nothing written, beside what heal really did with them.

The stored ``alerts`` rows are read back as the notifications heal received, in order of
arrival: an occurrence's firing at its ``received_at``, its resolution (when stored) at its
``updated_at``. Each goes through the real pure pieces of ingest: ``classify``, the rule
set's ``match`` and ``group_by``, ``group_key``, ``skip_delay``, the action's snapshot
(``engine.create.new_action_row``: params and templates checked, the target rendered),
the gate's order (silence, freeze, rate limits and budget, approval requirement,
auto-approval) and the decision core (``service.build_input`` and ``service.try_tiers``
with the tiers the policy configures). The incidents replay opens live in memory.

What replay cannot know, and how it answers instead (``UNKNOWABLE``, shown to people):
an action it would create never runs, so it is taken as in flight until its incident
resolves (a later alert of the incident joins it) and as counting towards rate limits and
the budget from its creation; the stored actions of before ``since`` count as they are
stored now (started ones from their start, unstarted ones still in flight); circuit
breakers and per-target concurrency depend on runs that never happen, so they are not
evaluated; silences, auto-approval's success history, playbooks and the knowledge base
are read as they are stored now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.gate import Silence, auto_approval, requirement
from heal.decide.service import build_input, decision_context, rejections, try_tiers
from heal.decide.tiers import Tier
from heal.domain.actions import IN_FLIGHT_STATUSES, ActionStatus, FailureType, Signal
from heal.domain.alerts import AlertStatus, IngestVerdict, classify
from heal.domain.decisions import Proposal, TierAttempt
from heal.domain.incidents import group_key, incident_title, worse_severity
from heal.engine.create import incident_context, new_action_row
from heal.governors import limits
from heal.policy.models import ActionBase, Policy, Rule
from heal.policy.ruleset import RuleSet
from heal.store import decisions_repo, incidents_repo
from heal.store.db import Database
from heal.store.tables import actions, alerts, approvals, silences, verifications

UNKNOWABLE = (
    "actions replay would create never run: each stays in flight until its incident "
    "resolves, and counts towards rate limits and the budget from its creation",
    "stored actions of before --since count towards rate limits and the budget as they "
    "are stored now (started ones from their start, unstarted ones if still in flight)",
    "circuit breakers and per-target concurrency depend on runs that never happen: not evaluated",
    "silences, auto-approval's success history, playbooks and the knowledge base are read "
    "as stored now, not as they were then",
    "each notification is replayed as a batch of its own",
)

Progress = Callable[[int, int], None]

# What replay says a new action would have done; the stored ones are put in the same words.
RUN = "run"
AUTO = "auto-approved"
APPROVAL = "needs approval"
BLOCKED = "blocked"
SILENCED = "silenced"
NOT_CREATABLE = "not creatable"
JOINED = "joined"
_COUNTED = (RUN, AUTO, APPROVAL)  # on its way: counts towards limits and the budget


@dataclass(frozen=True, slots=True)
class WouldAction:
    """An action replay would have created (or an alert that would have joined one)."""

    rule: str
    action: str
    signal: str
    at: datetime
    verdict: str
    reason: str = ""
    target: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    decided: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action,
            "signal": self.signal,
            "at": self.at.isoformat(),
            "verdict": self.verdict,
            "reason": self.reason,
            "target": self.target,
            "params": dict(self.params),
            "decided": self.decided,
        }


@dataclass(frozen=True, slots=True)
class WouldDecision:
    """The decision replay would have made for a rule with ``decide:``."""

    rule: str
    at: datetime
    attempts: Sequence[TierAttempt]
    winner: Proposal | None
    error: str | None = None
    latency_ms: float = 0.0

    @property
    def tier(self) -> str | None:
        return self.winner.tier.value if self.winner else None

    @property
    def action(self) -> str | None:
        return self.winner.action if self.winner else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "at": self.at.isoformat(),
            "tier": self.tier,
            "action": self.action,
            "params": dict(self.winner.params) if self.winner else None,
            "confidence": self.winner.confidence if self.winner else None,
            "rationale": self.winner.rationale if self.winner else None,
            "attempts": [a.as_record() for a in self.attempts],
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DidAction:
    """A stored action of the incident, in replay's words (``verdict``) and as it ended."""

    id: int
    rule: str
    action: str
    status: str
    verdict: str
    failure_type: str | None = None
    message: str | None = None
    outcome: str | None = None  # the verification's, when the action was under verify:

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "action": self.action,
            "status": self.status,
            "verdict": self.verdict,
            "failure_type": self.failure_type,
            "message": self.message,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class DidDecision:
    id: int
    rule: str
    state: str
    tier: str | None
    action: str | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "state": self.state,
            "tier": self.tier,
            "action": self.action,
            "error": self.error,
        }


@dataclass
class IncidentReplay:
    """One incident as replay would have opened it, beside the stored incident(s) its
    alerts went to."""

    number: int  # replay's own incident number, in order of opening
    key: str
    title: str
    severity: str | None
    opened_at: datetime
    rule: str | None
    group_labels: dict[str, str]
    alert_ids: list[int] = field(default_factory=list)
    rules_matched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    actions: list[WouldAction] = field(default_factory=list)
    decisions: list[WouldDecision] = field(default_factory=list)
    resolved_at: datetime | None = None
    stored_ids: list[int] = field(default_factory=list)
    did_actions: list[DidAction] = field(default_factory=list)
    did_decisions: list[DidDecision] = field(default_factory=list)
    # replay's bookkeeping
    firing: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    in_flight: set[tuple[str, str]] = field(default_factory=set, repr=False)

    @property
    def differences(self) -> list[str]:
        return differences(self)

    @property
    def changed(self) -> bool:
        return bool(self.differences)

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident": self.number,
            "title": self.title,
            "severity": self.severity,
            "opened_at": self.opened_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "group_labels": self.group_labels,
            "alert_ids": self.alert_ids,
            "rules_matched": self.rules_matched,
            "notes": self.notes,
            "would": {
                "actions": [a.as_dict() for a in self.actions],
                "decisions": [d.as_dict() for d in self.decisions],
            },
            "did": {
                "incident_ids": self.stored_ids,
                "actions": [a.as_dict() for a in self.did_actions],
                "decisions": [d.as_dict() for d in self.did_decisions],
            },
            "changed": self.changed,
            "differences": self.differences,
        }


@dataclass
class ReplayReport:
    since: datetime
    until: datetime
    alerts: int
    incidents: list[IncidentReplay]
    llm: str  # "asked", "skipped" (--no-llm) or "none" (the policy configures none)
    unknowable: Sequence[str] = UNKNOWABLE

    @property
    def changed(self) -> list[IncidentReplay]:
        return [i for i in self.incidents if i.changed]

    def totals(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for incident in self.incidents:
            for action in incident.actions:
                counted[action.verdict] = counted.get(action.verdict, 0) + 1
        return counted

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "alerts": self.alerts,
            "incidents": len(self.incidents),
            "changed": len(self.changed),
            "would": self.totals(),
            "llm": self.llm,
            "cannot_know": list(self.unknowable),
            "replayed": [i.as_dict() for i in self.incidents],
        }


@dataclass(frozen=True, slots=True)
class _Event:
    at: datetime
    status: AlertStatus
    row: dict[str, Any]


async def replay(
    database: Database,
    policy: Policy,
    tiers: Sequence[Tier],
    since: datetime,
    until: datetime,
    *,
    llm: str = "none",
    progress: Progress | None = None,
) -> ReplayReport:
    """What ``policy`` would have done with the alerts received in [since, until)."""
    async with database.read() as connection:
        rows = await _stored_alerts(connection, since, until)
        silence_rows = [dict(r._mapping) for r in await connection.execute(select(silences))]
        horizon = _longest_window(policy)
        prior = await _prior_actions(connection, since - horizon, since) if horizon else []
    events = _events(rows, until)
    run = _Replay(database, policy, tiers, [_Silence.of(r) for r in silence_rows])
    run.counted.extend(prior)
    for done, event in enumerate(events, 1):
        await run.notification(event)
        if progress is not None:
            progress(done, len(events))
    await _attach_what_happened(database, run.incidents)
    return ReplayReport(since, until, len(rows), run.incidents, llm)


async def _stored_alerts(
    connection: AsyncConnection, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(alerts)
        .where(alerts.c.received_at >= since, alerts.c.received_at < until)
        .order_by(alerts.c.received_at, alerts.c.id)
    )
    return [dict(row._mapping) for row in result]


def _longest_window(policy: Policy) -> timedelta | None:
    """How far back an action can still count towards a limit or the budget."""
    windows = [limit.per for action in policy.actions.values() for limit in action.limits]
    if policy.governors.budget is not None:
        windows.append(policy.governors.budget.per)
    return timedelta(seconds=max(windows)) if windows else None


async def _prior_actions(
    connection: AsyncConnection, since: datetime, until: datetime
) -> list[tuple[datetime, str, str | None]]:
    """The stored actions of before the replay that count towards its limits, as
    ``limits.check`` counts them: from their start, or, not started, while in flight."""
    in_flight = [status.value for status in IN_FLIGHT_STATUSES]
    result = await connection.execute(
        select(
            actions.c.action_name, actions.c.target, actions.c.started_at, actions.c.created_at
        ).where(
            or_(
                and_(actions.c.started_at >= since, actions.c.started_at < until),
                and_(
                    actions.c.started_at.is_(None),
                    actions.c.status.in_(in_flight),
                    actions.c.created_at >= since,
                    actions.c.created_at < until,
                ),
            )
        )
    )
    return [(row.started_at or row.created_at, row.action_name, row.target) for row in result]


def _events(rows: list[dict[str, Any]], until: datetime) -> list[_Event]:
    """The notifications the rows record, in order of arrival. An occurrence stored
    resolved at the moment it arrived was first seen resolved."""
    events: list[_Event] = []
    for row in rows:
        resolved = row["status"] == AlertStatus.RESOLVED.value
        if resolved and row["updated_at"] <= row["received_at"]:
            events.append(_Event(row["received_at"], AlertStatus.RESOLVED, row))
            continue
        events.append(_Event(row["received_at"], AlertStatus.FIRING, row))
        if resolved and row["updated_at"] < until:
            events.append(_Event(row["updated_at"], AlertStatus.RESOLVED, row))
    events.sort(key=lambda e: (e.at, e.row["id"], e.status is AlertStatus.RESOLVED))
    return events


@dataclass(frozen=True, slots=True)
class _Silence:
    silence: Silence
    starts_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> _Silence:
        return cls(Silence.from_row(row), row["starts_at"])

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.silence.ends_at


class _Replay:
    """The in-memory state of one replay: open incidents by group key, would-be actions."""

    def __init__(
        self, database: Database, policy: Policy, tiers: Sequence[Tier], silences: list[_Silence]
    ) -> None:
        self.database = database
        self.policy = policy
        self.ruleset = RuleSet(policy)
        self.tiers = tiers
        self.silences = silences
        self.incidents: list[IncidentReplay] = []
        self.open: dict[str, IncidentReplay] = {}
        self.of_alert: dict[int, IncidentReplay] = {}
        self.seen: dict[int, AlertStatus] = {}
        self.counted: list[tuple[datetime, str, str | None]] = []  # (at, action, target)

    async def notification(self, event: _Event) -> None:
        # The row as that notification said it (the stored one has its last status).
        row = {**event.row, "status": event.status.value}
        verdict = classify(self.seen.get(row["id"]), event.status)
        if verdict is IngestVerdict.DUPLICATE:
            return
        self.seen[row["id"]] = event.status
        labels: dict[str, str] = dict(row["labels"])
        match = self.ruleset.match(labels)
        incident = self._incident(row, labels, verdict, event.at, match.owner, match.rules)
        if incident is None:
            return
        signal = Signal.FIRING if verdict is IngestVerdict.NEW_FIRING else Signal.RESOLVED
        for rule in match.rules:
            await self._rule(incident, rule, row, labels, signal, event.at)
        if verdict is not IngestVerdict.NEW_FIRING:
            incident.firing.pop(row["id"], None)
            if not incident.firing and self.open.get(incident.key) is incident:
                incident.resolved_at = event.at
                del self.open[incident.key]

    def _incident(
        self,
        row: dict[str, Any],
        labels: dict[str, str],
        verdict: IngestVerdict,
        at: datetime,
        owner: Rule | None,
        rules: list[Rule],
    ) -> IncidentReplay | None:
        """The incident the notification goes to (as ingest: a resolution to its alert's,
        a firing to the open one of its group key, or a new one)."""
        if verdict is IngestVerdict.RESOLVES:
            return self.of_alert.get(row["id"])  # None: it fired before --since
        group_by = self.ruleset.group_by(owner)
        key = group_key(owner.name if owner else "*", group_by, labels)
        severity = labels.get("severity")
        incident = self.open.get(key)
        if incident is not None:
            incident.severity = worse_severity(incident.severity, severity)
        elif verdict is IngestVerdict.NEW_FIRING:
            incident = IncidentReplay(
                number=len(self.incidents) + 1,
                key=key,
                title=incident_title(group_by, labels),
                severity=severity,
                opened_at=at,
                rule=rules[0].name if rules else None,
                group_labels={k: labels.get(k, "") for k in group_by},
            )
            self.incidents.append(incident)
            self.open[key] = incident
        if incident is None:
            return None
        incident.alert_ids.append(row["id"])
        self.of_alert[row["id"]] = incident
        if verdict is IngestVerdict.NEW_FIRING:
            incident.firing[row["id"]] = row
        return incident

    async def _rule(
        self,
        incident: IncidentReplay,
        rule: Rule,
        row: dict[str, Any],
        labels: dict[str, str],
        signal: Signal,
        at: datetime,
    ) -> None:
        """One matching rule, as ingest's candidates: skipped past its skip_delay, else its
        actions for the signal and, on firing, its decision."""
        refs = [ref for ref in rule.actions if signal in ref.signal]
        decides = rule.decide is not None and signal is Signal.FIRING
        if not refs and not decides:
            return
        age = at - row["starts_at"]
        if (
            signal is Signal.FIRING
            and rule.skip_delay > 0
            and age > timedelta(seconds=rule.skip_delay)
        ):
            incident.notes.append(
                f"rule {rule.name!r} skipped for alert #{row['id']}: it began "
                f"{int(age.total_seconds())} s before, more than skip_delay {rule.skip_delay} s"
            )
            return
        if rule.name not in incident.rules_matched:
            incident.rules_matched.append(rule.name)
        for ref in refs:
            await self._action(incident, rule, ref.action, row, labels, signal, at)
        if decides and all(d.rule != rule.name for d in incident.decisions):
            await self._decide(incident, rule, row, labels, at)

    async def _decide(
        self,
        incident: IncidentReplay,
        rule: Rule,
        row: dict[str, Any],
        labels: dict[str, str],
        at: datetime,
    ) -> None:
        request = build_input(
            0,
            rule.name,
            self._incident_row(incident),
            list(incident.firing.values()),
            row["id"],
            self.policy,
        )
        if isinstance(request, str):
            incident.decisions.append(WouldDecision(rule.name, at, [], None, request))
            return
        began = time.monotonic()
        attempts, winner = await try_tiers(self.tiers, request, began + self.policy.decide.budget)
        latency = (time.monotonic() - began) * 1000
        error = None
        if winner is None:
            error = f"no tier proposed an allowed action: {rejections(attempts)}"
        incident.decisions.append(WouldDecision(rule.name, at, attempts, winner, error, latency))
        if winner is not None:
            await self._action(
                incident, rule, winner.action, row, labels, Signal.FIRING, at, winner
            )

    async def _action(
        self,
        incident: IncidentReplay,
        rule: Rule,
        name: str,
        row: dict[str, Any],
        labels: dict[str, str],
        signal: Signal,
        at: datetime,
        decided: Proposal | None = None,
    ) -> None:
        config = self.policy.actions[name]
        if (rule.name, name) in incident.in_flight:
            incident.actions.append(
                WouldAction(rule.name, name, signal.value, at, JOINED, "already in flight")
            )
            return
        snapshot = new_action_row(
            incident_id=0,
            alert_id=row["id"],
            rule=rule.name,
            action_name=name,
            config=config,
            signal=signal,
            alert={"id": row["id"], **_alert_context(row)},
            incident=incident_context(self._incident_row(incident)),
            settings=self.policy.settings,
            now=at,
            params=decided.params if decided else None,
            policy=self.policy,
        )
        target = snapshot.get("target")
        if snapshot["status"] != ActionStatus.RECEIVED.value:
            verdict, reason = NOT_CREATABLE, str(snapshot.get("message") or "")
        else:
            verdict, reason = await self._gate(config, rule, name, labels, target, at, decided)
        incident.actions.append(
            WouldAction(
                rule.name,
                name,
                signal.value,
                at,
                verdict,
                reason,
                target,
                dict(decided.params) if decided else {},
                decided is not None,
            )
        )
        if verdict in _COUNTED:
            incident.in_flight.add((rule.name, name))
            self.counted.append((at, name, target))

    async def _gate(
        self,
        config: ActionBase,
        rule: Rule,
        name: str,
        labels: dict[str, str],
        target: str | None,
        at: datetime,
        decided: Proposal | None,
    ) -> tuple[str, str]:
        """The gate's answer in its order (``ingest.service.gate``), from replay's own
        counts."""
        silence = next(
            (s.silence for s in self.silences if s.active(at) and s.silence.silences(labels)),
            None,
        )
        if silence is not None:
            return SILENCED, f"by silence #{silence.id} ({silence.comment})"
        verdicts = limits.freezes(self.policy, labels, at)
        for limit in config.limits:
            counted = self._count(at - timedelta(seconds=limit.per), name, target)
            verdicts.extend(v for v in [limits.over_limit(limit, name, target, counted)] if v)
        budget = self.policy.governors.budget
        if budget is not None:
            counted = self._count(at - timedelta(seconds=budget.per))
            verdicts.extend(v for v in [limits.over_budget(budget, counted)] if v)
        verdict = limits.combine(verdicts)
        if verdict is not None and verdict.mode == "block":
            return BLOCKED, verdict.reason
        needed = requirement(self.policy, config)
        if verdict is not None:
            return APPROVAL, verdict.reason
        if needed is None:
            return RUN, ""
        decision = decision_context(0, decided) if decided else None
        async with self.database.read() as connection:
            auto = await auto_approval(
                connection, self.policy, config, rule.name, name, labels, at, decision
            )
        if auto is not None:
            condition, reason = auto
            return AUTO, f"by condition {condition.name!r}: {reason}"
        return APPROVAL, "the policy requires an approval"

    def _count(self, since: datetime, name: str | None = None, target: str | None = None) -> int:
        return sum(
            1
            for at, action, on in self.counted
            if at >= since and (name is None or (action == name and on == target))
        )

    @staticmethod
    def _incident_row(incident: IncidentReplay) -> dict[str, Any]:
        return {
            "id": 0,
            "title": incident.title,
            "severity": incident.severity,
            "group_labels": incident.group_labels,
            "rule": incident.rule,
            "opened_at": incident.opened_at,
            "status": "open",
        }


def _alert_context(row: dict[str, Any]) -> dict[str, Any]:
    """An alert as an action's templates see it (``Alert.as_context``), from its row."""
    starts = row.get("starts_at")
    ends = row.get("ends_at")
    return {
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "labels": dict(row["labels"]),
        "annotations": dict(row.get("annotations") or {}),
        "starts_at": starts.isoformat() if isinstance(starts, datetime) else starts,
        "ends_at": ends.isoformat() if isinstance(ends, datetime) else ends,
        "generator_url": row.get("generator_url"),
        "source": row.get("source"),
    }


async def _attach_what_happened(database: Database, incidents: list[IncidentReplay]) -> None:
    """The stored incidents the replayed alerts went to, with their actions (and how they
    ended) and decisions."""
    async with database.read() as connection:
        for incident in incidents:
            ids = await _stored_incident_ids(connection, incident.alert_ids)
            incident.stored_ids = ids
            for incident_id in ids:
                stored = await incidents_repo.actions_of(connection, incident_id)
                asked = await _approved_actions(connection, [a["id"] for a in stored])
                outcomes = await _outcomes(connection, [a["id"] for a in stored])
                incident.did_actions.extend(
                    _did_action(a, a["id"] in asked, outcomes.get(a["id"])) for a in stored
                )
                incident.did_decisions.extend(
                    DidDecision(
                        d["id"],
                        d["rule"],
                        d["state"],
                        d["tier"],
                        (d["proposal"] or {}).get("action"),
                        d["error"],
                    )
                    for d in await decisions_repo.for_incident(connection, incident_id)
                )


async def _stored_incident_ids(connection: AsyncConnection, alert_ids: list[int]) -> list[int]:
    if not alert_ids:
        return []
    result = await connection.execute(
        select(alerts.c.incident_id).where(alerts.c.id.in_(alert_ids)).distinct()
    )
    return sorted(row[0] for row in result if row[0] is not None)


async def _approved_actions(connection: AsyncConnection, action_ids: list[int]) -> set[int]:
    """The actions that had an approval to wait for."""
    if not action_ids:
        return set()
    result = await connection.execute(
        select(approvals.c.action_id).where(approvals.c.action_id.in_(action_ids))
    )
    return {row[0] for row in result}


async def _outcomes(connection: AsyncConnection, action_ids: list[int]) -> dict[int, str]:
    if not action_ids:
        return {}
    result = await connection.execute(
        select(verifications.c.action_id, verifications.c.outcome).where(
            verifications.c.action_id.in_(action_ids)
        )
    )
    return {row[0]: row[1] for row in result if row[1] is not None}


def _did_action(row: dict[str, Any], asked: bool, outcome: str | None) -> DidAction:
    return DidAction(
        id=row["id"],
        rule=row["rule"],
        action=row["action_name"],
        status=row["status"],
        verdict=stored_verdict(row, asked),
        failure_type=row.get("failure_type"),
        message=row.get("message"),
        outcome=outcome,
    )


def stored_verdict(row: Mapping[str, Any], asked_approval: bool) -> str:
    """A stored action's fate at its creation, in replay's words."""
    status = row["status"]
    if status == ActionStatus.BLOCKED.value:
        return BLOCKED
    if status == ActionStatus.SHIELD.value:
        return SILENCED
    if row.get("failure_type") == FailureType.CREATE_FAILURE.value:
        return NOT_CREATABLE
    if asked_approval or status == ActionStatus.WAITING.value:
        return APPROVAL
    return RUN


def differences(incident: IncidentReplay) -> list[str]:
    """What a person would see change, in words: actions that would be created that were
    not (or the other way round), a different fate at the gate, another decision."""
    found: list[str] = []
    would = [a for a in incident.actions if a.verdict != JOINED]
    did = list(incident.did_actions)
    unmatched: list[DidAction] = []
    for stored in did:
        same = next((w for w in would if (w.rule, w.action) == (stored.rule, stored.action)), None)
        if same is None:
            unmatched.append(stored)
            continue
        would.remove(same)
        if _fate(same.verdict) != _fate(stored.verdict):
            why = f" ({same.reason})" if same.reason else ""
            found.append(
                f"{same.action}: would be {same.verdict}{why}; was {stored.verdict} "
                f"(ended {stored.status})"
            )
    found.extend(f"{w.action}: would be created ({w.verdict}); was not" for w in would)
    found.extend(f"{s.action}: was created (ended {s.status}); would not be" for s in unmatched)
    for decision in incident.decisions:
        stored_d = next((d for d in incident.did_decisions if d.rule == decision.rule), None)
        if stored_d is None:
            found.append(
                f"decision of {decision.rule!r}: would be made "
                f"({decision.tier or 'error'}: {decision.action or decision.error}); was not"
            )
        elif (stored_d.tier, stored_d.action) != (decision.tier, decision.action):
            found.append(
                f"decision of {decision.rule!r}: would be {decision.tier or 'error'} "
                f"{decision.action or ''}".rstrip()
                + f"; was {stored_d.tier or stored_d.state} {stored_d.action or ''}".rstrip()
            )
    for stored_d in incident.did_decisions:
        if all(d.rule != stored_d.rule for d in incident.decisions):
            found.append(f"decision of {stored_d.rule!r}: was made; would not be")
    return found


def _fate(verdict: str) -> str:
    """Auto-approved and run are the same fate: the action runs without a person."""
    return RUN if verdict == AUTO else verdict


def without_llm(policy: Policy) -> Policy:
    """The policy with no LLM tier (``--no-llm``)."""
    return policy.model_copy(update={"decide": policy.decide.model_copy(update={"llm": None})})


def llm_mode(policy: Policy, asked: bool) -> str:
    if policy.decide.llm is None:
        return "none"
    return "asked" if asked else "skipped"
