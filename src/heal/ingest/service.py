"""Ingest: deduplicate, group into incidents, match rules, create actions.

A whole batch is one write transaction: when the caller answers 202, the alerts, their
incidents, the actions and the actions' first wakes are all durable, or none of them is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.gate import (
    Silence,
    auto_approval,
    open_approval,
    requirement,
    wait_for_approval,
)
from heal.approvals.lifecycle import on_incidents_resolved
from heal.approvals.notices import announce
from heal.domain.actions import ActionStatus, FailureType, Signal
from heal.domain.alerts import Alert, AlertStatus, IngestVerdict, admit_all, classify
from heal.domain.incidents import IncidentStatus, group_key, incident_title, worse_severity
from heal.domain.notifications import Event
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind
from heal.engine.create import (
    block,
    incident_context,
    inflight_key,
    new_action_row,
    snapshot_verify,
)
from heal.engine.engine import log_action_failed, utcnow
from heal.engine.interfaces import WakeScheduler
from heal.governors import limits
from heal.observability import metrics
from heal.observability.logging import get_logger
from heal.policy.models import ActionBase, ApprovalRequirement, Policy, Rule, effective_verify
from heal.policy.ruleset import RuleSet
from heal.store import (
    actions_repo,
    alerts_repo,
    decisions_repo,
    incidents_repo,
    silences_repo,
    timeline_repo,
)
from heal.store.conflicts import is_lost_race
from heal.store.db import Database

log = get_logger("heal.ingest")
# A batch that loses a race runs again; each run sees more of what the winners stored.
INGEST_ATTEMPTS = 5


@dataclass(slots=True)
class IngestReport:
    received: int = 0
    new: int = 0
    resolved: int = 0
    duplicates: int = 0
    incidents_opened: int = 0
    incidents_resolved: int = 0
    actions_created: int = 0
    actions_joined: int = 0
    incident_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Item:
    """One notification after deduplication, on its way through the batch."""

    alert: Alert
    verdict: IngestVerdict
    rules: list[Rule]
    key: str
    group_by: list[str]
    alert_id: int | None = None
    incident_id: int | None = None


@dataclass(slots=True)
class _Candidate:
    item: _Item
    rule: Rule
    action: str
    signal: Signal


@dataclass(slots=True)
class _Batch:
    """One run of a batch through its transaction: what every step reads and adds to."""

    connection: AsyncConnection
    ruleset: RuleSet
    now: datetime
    report: IngestReport
    entries: timeline_repo.PendingRows
    items: list[_Item] = field(default_factory=list)
    resolving: list[tuple[_Item, int]] = field(default_factory=list)
    open_incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_items: list[_Item] = field(default_factory=list)
    decisions_opened: list[int] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    action_ids: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)

    @property
    def policy(self) -> Policy:
        return self.ruleset.policy


class _Gates:
    """New action rows of one batch through the gate; the silences are read once, when
    the first action needs them."""

    def __init__(self, run: _Batch) -> None:
        self.run = run
        self.silences: list[Silence] | None = None
        self.incidents = {row["id"]: row for row in run.open_incidents.values()}

    async def new_row(self, candidate: _Candidate) -> dict[str, Any]:
        run = self.run
        incident_id = candidate.item.incident_id or 0
        incident = self.incidents.get(incident_id, {"id": incident_id})
        config = run.policy.actions[candidate.action]
        row = new_action_row(
            incident_id=incident_id,
            alert_id=candidate.item.alert_id,
            rule=candidate.rule.name,
            action_name=candidate.action,
            config=config,
            signal=candidate.signal,
            alert={"id": candidate.item.alert_id, **candidate.item.alert.as_context()},
            incident=incident_context(incident),
            settings=run.policy.settings,
            now=run.now,
        )
        snapshot_verify(row, effective_verify(candidate.rule.verify, config.verify))
        if row["status"] == ActionStatus.RECEIVED.value:
            if self.silences is None:
                active = await silences_repo.active(run.connection, run.now)
                self.silences = [Silence.from_row(r) for r in active]
            await gate(
                run.connection,
                row,
                config,
                run.policy,
                candidate.rule.name,
                candidate.action,
                candidate.item.alert.labels,
                self.silences,
                run.now,
                pending=run.rows,
            )
        return row


class IngestService:
    def __init__(
        self,
        database: Database,
        scheduler: WakeScheduler,
        rules: Callable[[], RuleSet],
        redact: Redactor | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_firing: Callable[[AsyncConnection, list[int], datetime], Awaitable[None]] | None = None,
        on_decisions: Callable[[list[int]], None] = lambda ids: None,
    ) -> None:
        self.db = database
        self.scheduler = scheduler
        self.rules = rules
        self.redact = redact or Redactor()
        self.clock = clock
        # Told, in the batch's transaction, of the incidents that got new occurrences
        # (verification's relapse check; wired by heal.app: verify sits above ingest).
        self.on_firing = on_firing
        # Told the decisions a batch opened, after its commit (the decision service runs
        # them; the sweep finds any it did not).
        self.on_decisions = on_decisions

    async def ingest(self, batch: list[Alert], source: str = "api") -> IngestReport:
        """Store a batch, all or nothing; :class:`AlertsRefused` when any alert cannot be.

        Concurrent batches can collide on a unique key (the same occurrence, or the same
        new in-flight action) or deadlock on PostgreSQL; the loser's transaction is rolled
        back and run again, and then sees what the winner stored.
        """
        admitted = admit_all(batch)
        metrics.ALERTS_RECEIVED.labels(source).inc(len(batch))
        for attempt in range(1, INGEST_ATTEMPTS + 1):
            try:
                return await self._ingest_once(admitted, source)
            except (IntegrityError, OperationalError) as exc:
                if not is_lost_race(exc) or attempt == INGEST_ATTEMPTS:
                    raise
                log.info("ingest collided with a concurrent batch; retrying", attempt=attempt)
        raise AssertionError("unreachable")

    async def _ingest_once(self, batch: list[Alert], source: str) -> IngestReport:
        notifications = _collapse(batch)
        now = self.clock()
        report = IngestReport(received=len(batch), duplicates=len(batch) - len(notifications))
        async with self.db.write(shed=True) as connection:
            run = _Batch(connection, self.rules(), now, report, timeline_repo.PendingRows(now))
            await self._classify(run, notifications)
            await self._group_into_incidents(run)
            await self._store_alerts(run)
            candidates, deciding = self._candidates(run.items, now, run.entries.note)
            run.decisions_opened = await self._open_decisions(
                connection, deciding, run.policy, now, run.entries.note
            )
            await self._create_actions(run, candidates)
            await self._resolve_incidents(run)
            await timeline_repo.append_rows(connection, run.entries.rows, self.redact)
            # After the resolution's own entries, so the timeline reads in order.
            await on_incidents_resolved(connection, run.resolved, now, self.redact)
            await self._judge_relapses(run)
        self._after_commit(run, source)
        return report

    async def _classify(self, run: _Batch, notifications: list[Alert]) -> None:
        """Each notification against what is stored: new, repeat (dropped), or the
        resolution of a known occurrence; its rules and group key."""
        known = await alerts_repo.find(run.connection, (a.fingerprint for a in notifications))
        for alert in notifications:
            seen = known.get((alert.fingerprint, alert.starts_at))
            verdict = classify(seen.status if seen else None, alert.status)
            if verdict is IngestVerdict.DUPLICATE:
                run.report.duplicates += 1
                continue
            match = run.ruleset.match(alert.labels)
            group_by = run.ruleset.group_by(match.owner)
            owner = match.owner.name if match.owner else "*"
            item = _Item(
                alert, verdict, match.rules, group_key(owner, group_by, alert.labels), group_by
            )
            if seen is not None:
                item.alert_id, item.incident_id = seen.id, seen.incident_id
                run.resolving.append((item, seen.id))
            run.items.append(item)

    async def _group_into_incidents(self, run: _Batch) -> None:
        """Join the open incident of each group key, or open one for a new firing."""
        connection = run.connection
        run.open_incidents = await incidents_repo.open_by_keys(
            connection, (i.key for i in run.items if i.verdict is not IngestVerdict.RESOLVES)
        )
        to_open: dict[str, dict[str, Any]] = {}
        for item in run.items:
            if item.verdict is IngestVerdict.RESOLVES:
                continue
            severity = item.alert.labels.get("severity")
            incident = run.open_incidents.get(item.key)
            if incident is not None:
                item.incident_id = incident["id"]
                await _worsen(connection, incident, severity)
            elif item.verdict is IngestVerdict.NEW_FIRING:
                pending = to_open.get(item.key)
                if pending is None:
                    to_open[item.key] = _incident_row(item, run.now)
                else:
                    pending["severity"] = worse_severity(pending["severity"], severity)
        opened, found_open = await incidents_repo.open_or_join(connection, list(to_open.values()))
        for key, row in to_open.items():
            if key in opened:
                row["id"] = opened[key]
                run.open_incidents[key] = row
                await self._opened(run, row)
        for key, incident in found_open.items():  # opened meanwhile by a concurrent batch
            await _worsen(connection, incident, to_open[key]["severity"])
            run.open_incidents[key] = incident
        metrics.INCIDENTS_OPENED.inc(len(opened))
        run.report.incidents_opened = len(opened)
        for item in run.items:
            if item.incident_id is None and item.key in run.open_incidents:
                item.incident_id = run.open_incidents[item.key]["id"]

    async def _opened(self, run: _Batch, row: dict[str, Any]) -> None:
        said = f"incident opened: {row['title']}"
        run.entries.note(
            row["id"],
            EventKind.INCIDENT_OPENED,
            said,
            group_labels=row["group_labels"],
            rule=row["rule"],
        )
        await announce(
            run.connection,
            run.policy,
            Event.INCIDENT_OPENED,
            row,
            said,
            run.now,
            redact=self.redact,
        )

    async def _store_alerts(self, run: _Batch) -> None:
        """Insert the new occurrences, resolve the known ones."""
        run.new_items = [i for i in run.items if i.verdict is not IngestVerdict.RESOLVES]
        ids = await alerts_repo.insert_many(
            run.connection, [_alert_row(i.alert, i.incident_id, run.now) for i in run.new_items]
        )
        for item, alert_id in zip(run.new_items, ids, strict=True):
            item.alert_id = alert_id
        await alerts_repo.resolve_many(
            run.connection, [(alert_id, i.alert.ends_at) for i, alert_id in run.resolving], run.now
        )
        run.report.new = len(run.new_items)
        run.report.resolved = sum(1 for i in run.items if i.verdict is not IngestVerdict.NEW_FIRING)
        for item in run.items:
            if item.incident_id is None:
                continue
            if item.verdict is IngestVerdict.NEW_FIRING:
                run.entries.note(
                    item.incident_id,
                    EventKind.ALERT_RECEIVED,
                    f"alert {item.alert.name} firing",
                    alert_id=item.alert_id,
                    fingerprint=item.alert.fingerprint,
                    labels=item.alert.labels,
                )
            else:
                run.entries.note(
                    item.incident_id,
                    EventKind.ALERT_RESOLVED,
                    f"alert {item.alert.name} resolved",
                    alert_id=item.alert_id,
                    fingerprint=item.alert.fingerprint,
                )

    async def _create_actions(self, run: _Batch, candidates: list[_Candidate]) -> None:
        """At most one action in flight per (incident, rule, action): new ones through the
        gate, inserted in one statement; later candidates join the one in flight."""
        keys = [inflight_key(c.item.incident_id or 0, c.rule.name, c.action) for c in candidates]
        in_flight = await actions_repo.in_flight(run.connection, keys)
        row_keys: list[str] = []
        creating: set[str] = set()
        joiners: list[tuple[_Candidate, str]] = []
        gates = _Gates(run)
        for candidate, key in zip(candidates, keys, strict=True):
            if key in in_flight or key in creating:
                joiners.append((candidate, key))
                continue
            creating.add(key)
            run.rows.append(await gates.new_row(candidate))
            row_keys.append(key)
        run.action_ids = await actions_repo.insert_many(run.connection, run.rows)
        for row, action_id in zip(run.rows, run.action_ids, strict=True):
            await record_created(
                run.connection,
                row,
                action_id,
                f"by rule {row['rule']!r}",
                run.entries.note,
                run.policy,
                self.scheduler,
                run.now,
            )
        created = dict(zip(row_keys, run.action_ids, strict=True))
        for candidate, key in joiners:
            joined = in_flight.get(key) or created.get(key)
            run.entries.note(
                candidate.item.incident_id,
                EventKind.ACTION_JOINED,
                f"alert joined in-flight action {candidate.action!r} (#{joined})",
                action_id=joined,
                alert_id=candidate.item.alert_id,
            )
        run.report.actions_created = len(run.rows)
        run.report.actions_joined = len(joiners)

    async def _resolve_incidents(self, run: _Batch) -> None:
        """Incidents whose last firing alert just resolved are resolved too."""
        touched = {
            i.incident_id
            for i in run.items
            if i.incident_id is not None and i.verdict is not IngestVerdict.NEW_FIRING
        }
        counts = await alerts_repo.firing_counts(run.connection, touched)
        run.resolved = sorted(incident_id for incident_id, firing in counts.items() if firing == 0)
        await incidents_repo.resolve(run.connection, run.resolved, run.now, "resolved")
        said = "incident resolved: all alerts resolved"
        for incident_id in run.resolved:
            run.entries.note(incident_id, EventKind.INCIDENT_RESOLVED, said)
            await announce(
                run.connection,
                run.policy,
                Event.INCIDENT_RESOLVED,
                incident_id,
                said,
                run.now,
                redact=self.redact,
            )
        run.report.incidents_resolved = len(run.resolved)

    async def _judge_relapses(self, run: _Batch) -> None:
        if self.on_firing is not None:
            fired = sorted({i.incident_id for i in run.new_items if i.incident_id is not None})
            await self.on_firing(run.connection, fired, run.now)

    def _after_commit(self, run: _Batch, source: str) -> None:
        if run.rows:
            self.scheduler.committed(run.now)
        if run.decisions_opened:
            self.on_decisions(run.decisions_opened)
        _log_creation_failures(run.rows, run.action_ids)
        metrics.ALERTS_DEDUPLICATED.labels(source).inc(run.report.duplicates)
        run.report.incident_ids = sorted(
            {i.incident_id for i in run.items if i.incident_id is not None}
        )

    def _candidates(
        self, items: list[_Item], now: datetime, note: Callable[..., None]
    ) -> tuple[list[_Candidate], list[tuple[_Item, Rule]]]:
        """The actions the batch's rules name, and the (alert, rule) pairs whose rule
        decides (``decide:``) for a new firing alert."""
        candidates: list[_Candidate] = []
        deciding: list[tuple[_Item, Rule]] = []
        for item in items:
            if item.incident_id is None:
                continue
            signal = Signal.FIRING if item.verdict is IngestVerdict.NEW_FIRING else Signal.RESOLVED
            for rule in item.rules:
                refs = [ref for ref in rule.actions if signal in ref.signal]
                decides = rule.decide is not None and signal is Signal.FIRING
                if not refs and not decides:
                    continue
                age = now - item.alert.starts_at
                if (
                    signal is Signal.FIRING
                    and rule.skip_delay > 0
                    and age > timedelta(seconds=rule.skip_delay)
                ):
                    note(
                        item.incident_id,
                        EventKind.RULE_SKIPPED,
                        f"rule {rule.name!r} skipped: the alert began {int(age.total_seconds())} s "
                        f"ago, more than skip_delay {rule.skip_delay} s",
                        rule=rule.name,
                        alert_id=item.alert_id,
                        skip_delay=rule.skip_delay,
                    )
                    continue
                note(
                    item.incident_id,
                    EventKind.RULE_MATCHED,
                    f"rule {rule.name!r} matched ({signal.value})",
                    rule=rule.name,
                    alert_id=item.alert_id,
                    actions=[ref.action for ref in refs],
                )
                candidates.extend(_Candidate(item, rule, ref.action, signal) for ref in refs)
                if decides:
                    deciding.append((item, rule))
        return candidates, deciding

    async def _open_decisions(
        self,
        connection: AsyncConnection,
        deciding: list[tuple[_Item, Rule]],
        policy: Policy,
        now: datetime,
        note: Callable[..., None],
    ) -> list[int]:
        """A decision per incident and deciding rule, unless it has one (a later alert of
        the incident, or a concurrent batch, joins it): the ids of those opened here."""
        rows = {
            (item.incident_id or 0, rule.name): decisions_repo.new_row(
                item.incident_id or 0, rule.name, item.alert_id, now, policy.decide.budget
            )
            for item, rule in deciding
        }
        found = await decisions_repo.open_many(connection, list(rows.values()))
        opened: list[int] = []
        for (incident_id, rule_name), (decision_id, created) in sorted(found.items()):
            if created:
                opened.append(decision_id)
                note(
                    incident_id,
                    EventKind.DECISION_OPENED,
                    f"decision #{decision_id} opened for rule {rule_name!r} "
                    f"(budget {policy.decide.budget:g} s)",
                    decision_id=decision_id,
                    rule=rule_name,
                )
            else:
                note(
                    incident_id,
                    EventKind.DECISION_JOINED,
                    f"alert joined decision #{decision_id} of rule {rule_name!r}",
                    decision_id=decision_id,
                    rule=rule_name,
                )
        return opened


async def gate(
    connection: AsyncConnection,
    row: dict[str, Any],
    config: ActionBase,
    policy: Policy,
    rule: str,
    action: str,
    labels: dict[str, str],
    silences: list[Silence],
    now: datetime,
    pending: Sequence[dict[str, Any]] = (),
) -> None:
    """A new action's row: silenced (shield), blocked or made to wait for approval by a
    governor (``heal.governors.limits``), auto-approved, waiting for approval, or simply
    received (also for a fallback, ``heal.ingest.fallback``). ``pending``: the rows this
    transaction created before, not inserted yet (they count towards the limits)."""
    silence = next((s for s in silences if s.silences(labels)), None)
    if silence is not None:
        row.update(
            status=ActionStatus.SHIELD.value,
            finished_at=now,
            next_poll_at=None,
            next_wake_at=None,
            inflight_key=None,
            message=f"silenced by silence #{silence.id} ({silence.comment}, "
            f"by {silence.created_by})",
        )
        row["_gate_note"] = f"action not run: {row['message']}"
        return
    verdict = await limits.check(
        connection, policy, config, action, row.get("target"), now, pending, labels
    )
    if verdict is not None and verdict.mode == "block":
        block(row, verdict.reason, now)
        return
    needed = requirement(policy, config)
    if verdict is not None:
        # Past a governor's limit, people decide, whatever auto-approval would say.
        needed = needed or config.approval or policy.approval.require
        row["_gate_note"] = f"needs approval: {verdict.reason}"
        wait_for_approval(row, config, needed, now)
        row["_approval"] = needed
        return
    if needed is None:
        return
    decision = (row.get("context") or {}).get("decision")
    auto = await auto_approval(connection, policy, config, rule, action, labels, now, decision)
    if auto is not None:
        condition, reason = auto
        row["_gate_note"] = f"auto-approved by condition {condition.name!r}: {reason}"
        return
    wait_for_approval(row, config, needed, now)
    row["_approval"] = needed


async def record_created(
    connection: AsyncConnection,
    row: dict[str, Any],
    action_id: int,
    why: str,
    note: Callable[..., None],
    policy: Policy,
    scheduler: WakeScheduler,
    now: datetime,
    noted: Mapping[str, Any] | None = None,
) -> None:
    """A new action just inserted: its timeline entries (created ``why``, what the gate
    said), its approval if it waits for one, its first wake. ``noted``: extra data of the
    creation's entry."""
    note(
        row["incident_id"],
        EventKind.ACTION_CREATED,
        f"action {row['action_name']!r} created {why}"
        + (f": {row['message']}" if row.get("message") else ""),
        action_id,
        status=row["status"],
        signal=row["signal"],
        **(noted or {}),
    )
    gate_note = row.pop("_gate_note", None)
    if gate_note:
        note(
            row["incident_id"], EventKind.ACTION_STATUS, gate_note, action_id, status=row["status"]
        )
    needed = row.pop("_approval", None)
    if needed is not None:
        await request_approval(connection, row, action_id, needed, now, note, policy)
    if row["next_wake_at"] is not None:
        await scheduler.schedule(connection, action_id, 0, row["next_wake_at"])


async def request_approval(
    connection: AsyncConnection,
    row: dict[str, Any],
    action_id: int,
    needed: ApprovalRequirement,
    now: datetime,
    note: Callable[..., None],
    policy: Policy | None = None,
) -> None:
    approval_id, message = await open_approval(connection, row, action_id, needed, now, policy)
    note(
        row["incident_id"],
        EventKind.ACTION_STATUS,
        message,
        action_id=action_id,
        status="waiting",
        approval_id=approval_id,
    )


async def _worsen(
    connection: AsyncConnection, incident: dict[str, Any], severity: str | None
) -> None:
    """The incident takes the worse of its severity and the new alert's."""
    worse = worse_severity(incident["severity"], severity)
    if worse != incident["severity"]:
        incident["severity"] = worse
        await incidents_repo.set_severity(connection, incident["id"], worse or "")


def _incident_row(item: _Item, now: datetime) -> dict[str, Any]:
    labels = item.alert.labels
    return {
        "group_key": item.key,
        "open_key": item.key,
        "rule": item.rules[0].name if item.rules else None,
        "title": incident_title(item.group_by, labels),
        "severity": labels.get("severity"),
        "status": IncidentStatus.OPEN.value,
        "group_labels": {k: labels.get(k, "") for k in item.group_by},
        "opened_at": now,
    }


def _collapse(batch: list[Alert]) -> list[Alert]:
    """One notification per occurrence within a batch; a resolved one wins."""
    latest: dict[tuple[str, datetime], Alert] = {}
    for alert in batch:
        key = (alert.fingerprint, alert.starts_at)
        if key not in latest or alert.status is AlertStatus.RESOLVED:
            latest[key] = alert
    return list(latest.values())


def _alert_row(alert: Alert, incident_id: int | None, now: datetime) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "status": alert.status.value,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url,
        "source": alert.source,
        "received_at": now,
        "updated_at": now,
        "incident_id": incident_id,
    }


def _log_creation_failures(rows: list[dict[str, Any]], action_ids: list[int]) -> None:
    """The engine's ``action failed`` line, for an action that could not even be created
    (its template_detail did not render): it is stored, and logged once it is."""
    for row, action_id in zip(rows, action_ids, strict=True):
        if row["failure_type"] == FailureType.CREATE_FAILURE.value:
            log_action_failed(
                action_id=action_id,
                incident_id=row["incident_id"],
                rule=row["rule"],
                action=row["action_name"],
                failure_type=row["failure_type"],
                reason=row["message"],
            )
