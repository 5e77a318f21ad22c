"""Watching an incident after its action succeeded, and the verdict on the fix.

The engine's transition hook opens a watch (a ``verifications`` row, deadlines included)
in the commit of the action's success. The periodic sweep judges each pending watch from
the rows alone, by the times they record (when the incident resolved, when an alert fired
again), so a sweep that runs late, or after a restart, reaches the same verdict:

- the incident resolved by ``within_at``: quiet from then (or from the action's success,
  if it resolved earlier) for ``quiet_for``; a new occurrence of one of its alerts
  (same fingerprint) or a new incident of its group key meanwhile: **relapsed**;
  otherwise, once the quiet ends: **verified**;
- still open at ``within_at``, or resolved only after it: **ineffective** (resolved late,
  if the incident resolves afterwards: the score tells the two apart).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.notices import announce
from heal.domain.actions import ActionStatus
from heal.domain.incidents import IncidentStatus
from heal.domain.notifications import Event
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.domain.verification import OnIneffective, Outcome
from heal.engine.engine import utcnow
from heal.engine.interfaces import WakeScheduler
from heal.engine.machine import ActionState
from heal.observability import metrics
from heal.observability.logging import get_logger
from heal.policy.models import Verify, effective_verify
from heal.policy.ruleset import RuleSet
from heal.store import actions_repo, incidents_repo, notifications_repo, timeline_repo
from heal.store import verifications_repo as repo
from heal.store.db import Database
from heal.verify.followup import create_followup, next_action, rollback_of

log = get_logger("heal.verify")

_OUTCOME_EVENTS = {
    Outcome.VERIFIED: Event.OUTCOME_VERIFIED,
    Outcome.INEFFECTIVE: Event.OUTCOME_INEFFECTIVE,
    Outcome.RELAPSED: Event.OUTCOME_RELAPSED,
}
SWEEP_BATCH = 200


@dataclass(slots=True)
class _Verdict:
    outcome: Outcome
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


class VerificationService:
    def __init__(
        self,
        database: Database,
        scheduler: WakeScheduler,
        rules: Callable[[], RuleSet],
        redact: Redactor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.scheduler = scheduler
        self.rules = rules
        self.redact = redact or Redactor()
        self.clock = clock

    # -- the engine's hook: the watch opens in the commit of the action's success --------
    async def on_transition(
        self, connection: AsyncConnection, before: dict[str, Any], after: ActionState, now: datetime
    ) -> None:
        if after.status is not ActionStatus.SUCCESS or before["status"] == after.status.value:
            return
        verify = verify_of(before.get("config") or {}, after)
        if verify is None:
            return
        within_at = now + timedelta(seconds=verify.within)
        await repo.insert_pending(
            connection,
            {
                "action_id": before["id"],
                "incident_id": before["incident_id"],
                "rule": before["rule"],
                "action_name": before["action_name"],
                "outcome": Outcome.PENDING.value,
                "on_ineffective": verify.on_ineffective.value,
                "quiet_for": verify.quiet_for,
                "started_at": now,
                "within_at": within_at,
                "resolved_at": None,
                "quiet_until": None,
                "outcome_at": None,
                "evidence": {},
            },
        )
        entry = TimelineEntry(
            EventKind.ACTION_OUTCOME,
            f"verifying {before['action_name']!r}: its incident's alerts must resolve within "
            f"{verify.within} s and stay quiet for {verify.quiet_for} s",
            {
                "outcome": Outcome.PENDING.value,
                "within_at": within_at.isoformat(),
                "quiet_for": verify.quiet_for,
                "on_ineffective": verify.on_ineffective.value,
            },
            action_id=before["id"],
        )
        await timeline_repo.append(connection, before["incident_id"], [entry], now, self.redact)

    # -- the sweep ------------------------------------------------------------------------
    async def sweep(self, batch: int = SWEEP_BATCH) -> int:
        """Judge every pending verification whose verdict is due; the number reached."""
        reached = 0
        after_id = 0
        while True:
            async with self.db.read() as connection:
                ids = await repo.pending_after(connection, after_id, batch)
            for verification_id in ids:
                if await self.judge(verification_id):
                    reached += 1
            if len(ids) < batch:
                return reached
            after_id = ids[-1]

    async def judge(self, verification_id: int) -> bool:
        """Reach the verdict of one watch if it is due; True when one was reached.

        Looked at in a read transaction first: most sweeps find most watches not yet due,
        and they must not queue for the one writer. What is due is then decided again
        under the write transaction, so a concurrent sweep cannot judge twice.
        """
        now = self.clock()
        async with self.db.read() as connection:
            found = await self._assess_by_id(connection, verification_id, now)
        if found is None:
            return False
        wakes: list[datetime] = []
        async with self.db.write() as connection:
            reached = await self._record(connection, verification_id, now, wakes)
        if reached is None:
            return False
        self._reached(*reached, wakes, "sweep")
        return True

    # -- ingest's hook: a new firing judged in the transaction that stores it -------------
    async def on_firing(
        self, connection: AsyncConnection, incident_ids: Sequence[int], now: datetime
    ) -> None:
        """New alert occurrences were stored in these incidents (ingest's transaction):
        the watches they may have relapsed get their verdict now, in that transaction,
        through the sweep's own code, instead of at the next sweep.

        The watches looked at are those of resolved incidents of the same group key, or
        holding one of the alerts again; what is due is decided as the sweep decides it.
        """
        if not incident_ids:
            return
        wakes: list[datetime] = []
        reached = []
        try:
            # A savepoint: a failure here must not cost the alerts their ingest; the watch
            # stays pending and the sweep judges it (by the same rows, to the same verdict).
            async with connection.begin_nested():
                for verification_id in await repo.pending_near(connection, incident_ids):
                    found = await self._record(connection, verification_id, now, wakes)
                    if found is not None:
                        reached.append(found)
        except Exception as exc:
            log.error(
                "verification at ingest failed; the sweep will judge",
                incidents=list(incident_ids),
                error=self.redact.text(f"{type(exc).__name__}: {exc}"),
                exc_info=True,
            )
            return
        # Counted and logged before the commit, which is the ingest's: a batch rolled back
        # and run again (a lost race) judges again and counts again, which is rare enough.
        # On the embedded runtime the follow-ups' wakes are claimed by a write transaction,
        # which waits for the ingest's: the kick is not lost.
        for watch, verdict in reached:
            self._reached(watch, verdict, wakes, "ingest")

    async def _record(
        self,
        connection: AsyncConnection,
        verification_id: int,
        now: datetime,
        wakes: list[datetime],
    ) -> tuple[dict[str, Any], _Verdict] | None:
        """In the caller's write transaction: the watch's verdict if it is due, with its
        timeline entries, notifications and on_ineffective follow-up (wakes: theirs)."""
        found = await self._assess_by_id(connection, verification_id, now)
        if found is None:
            return None
        watch, incident, verdict, resolution = found
        if resolution:
            await repo.set_values(connection, verification_id, resolution)
        if verdict is None:
            return None
        if not await repo.set_values(
            connection,
            verification_id,
            {
                "outcome": verdict.outcome.value,
                "outcome_at": now,
                "evidence": self.redact(verdict.evidence),
            },
        ):
            return None
        notes = [
            TimelineEntry(
                EventKind.ACTION_OUTCOME,
                verdict.message,
                {"outcome": verdict.outcome.value, **verdict.evidence},
                action_id=watch["action_id"],
            )
        ]
        event = _OUTCOME_EVENTS.get(verdict.outcome)
        if event is not None:
            await announce(
                connection,
                self.rules().policy,
                event,
                incident,
                verdict.message,
                now,
                redact=self.redact,
                action={
                    "id": watch["action_id"],
                    "action_name": watch["action_name"],
                    "rule": watch["rule"],
                    "status": "success",
                },
            )
        if verdict.outcome.is_failure:
            notes += await self._on_ineffective(connection, watch, incident, verdict, now, wakes)
        await timeline_repo.append(connection, watch["incident_id"], notes, now, self.redact)
        return watch, verdict

    def _reached(
        self, watch: dict[str, Any], verdict: _Verdict, wakes: list[datetime], by: str
    ) -> None:
        metrics.ACTION_OUTCOMES.labels(
            verdict.outcome.value, watch["rule"], watch["action_name"]
        ).inc()
        for at in wakes:
            self.scheduler.committed(at)
        log.info(
            "verification reached its verdict",
            action_id=watch["action_id"],
            rule=watch["rule"],
            action=watch["action_name"],
            outcome=verdict.outcome.value,
            by=by,
        )

    async def _assess_by_id(
        self, connection: AsyncConnection, verification_id: int, now: datetime
    ) -> tuple[dict[str, Any], dict[str, Any], _Verdict | None, dict[str, Any] | None] | None:
        """The watch, its incident, its verdict if due, and the resolution to record if the
        incident resolved in time; None when there is nothing to write."""
        watch = await repo.get(connection, verification_id)
        if watch is None or watch["outcome"] != Outcome.PENDING.value:
            return None
        incident = await incidents_repo.get(connection, watch["incident_id"])
        assert incident is not None
        resolution = _resolution(watch, incident)
        if resolution is not None:
            watch = {**watch, **resolution}
        verdict = await self._verdict(connection, watch, incident, now)
        if verdict is None and resolution is None:
            return None
        return watch, incident, verdict, resolution

    async def _verdict(
        self,
        connection: AsyncConnection,
        watch: dict[str, Any],
        incident: dict[str, Any],
        now: datetime,
    ) -> _Verdict | None:
        """The verdict, if it is due (``watch`` carries a resolution just found)."""
        name = watch["action_name"]
        within = int((watch["within_at"] - watch["started_at"]).total_seconds())
        if watch["resolved_at"] is None:
            resolved = incident["status"] == IncidentStatus.RESOLVED.value
            if not resolved and now < watch["within_at"]:
                return None
            firing = await self._firing_at_deadline(connection, watch)
            late = (
                f"; the incident resolved only at {incident['resolved_at']:%H:%M:%S} UTC"
                if resolved
                else ""
            )
            return _Verdict(
                Outcome.INEFFECTIVE,
                f"outcome ineffective: {name!r} did not fix the incident: still firing "
                f"{within} s after it succeeded: {_describe(firing)}{late}",
                {"still_firing": [_evidence(a) for a in firing]},
            )
        quiet_until = watch["quiet_until"]
        quiet_from = quiet_until - timedelta(seconds=watch["quiet_for"])
        again = await repo.alerts_received_between(
            connection,
            {a["fingerprint"] for a in await repo.incident_alerts(connection, incident["id"])},
            quiet_from,
            min(now, quiet_until),
            incident["id"],
        )
        reopened = await repo.incidents_opened_between(
            connection, incident["group_key"], quiet_from, min(now, quiet_until), incident["id"]
        )
        if again or reopened:
            return _Verdict(
                Outcome.RELAPSED,
                f"outcome relapsed: {name!r} fixed the incident only for a while: fired again "
                f"within {watch['quiet_for']} s of resolving: "
                + (_describe(again) if again else f"incident #{reopened[0]['id']} opened"),
                {
                    "fired_again": [_evidence(a) for a in again],
                    "incidents": [i["id"] for i in reopened],
                },
            )
        if now < quiet_until:
            return None
        took = int((watch["resolved_at"] - watch["started_at"]).total_seconds())
        return _Verdict(
            Outcome.VERIFIED,
            f"outcome verified: {name!r} fixed the incident (resolved "
            + (f"{took} s after it succeeded" if took > 0 else "by the time it succeeded")
            + f", quiet for {watch['quiet_for']} s since)",
            {"resolved_at": watch["resolved_at"].isoformat()},
        )

    async def _firing_at_deadline(
        self, connection: AsyncConnection, watch: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The incident's alerts that still fired at ``within_at`` (resolved after it, or
        not at all): what a late sweep still knows of the deadline."""
        return [
            a
            for a in await repo.incident_alerts(connection, watch["incident_id"])
            if a["status"] != "resolved" or a["updated_at"] > watch["within_at"]
        ]

    async def _on_ineffective(
        self,
        connection: AsyncConnection,
        watch: dict[str, Any],
        incident: dict[str, Any],
        verdict: _Verdict,
        now: datetime,
        wakes: list[datetime],
    ) -> list[TimelineEntry]:
        choice = OnIneffective(watch["on_ineffective"])
        if choice is OnIneffective.NONE:
            return []
        policy = self.rules().policy
        source = await actions_repo.load(connection, watch["action_id"])
        assert source is not None
        if choice is OnIneffective.ESCALATE:
            rule = next((r for r in policy.rules if r.name == watch["rule"]), None)
            following = next_action(rule, watch["action_name"])
            # A relapse's alerts fire in the incident they opened, if it is still open.
            target = await repo.open_incident_of_key(connection, incident["group_key"])
            target = target or incident
            if following is None or following not in policy.actions:
                said = f"rule {watch['rule']!r} has no further action"
            elif target["status"] == IncidentStatus.RESOLVED.value:
                # Judged late (heal was down): the alerts have resolved since, and there
                # is nothing left for the next action to fix.
                said = f"the incident has resolved since; {following!r} not started"
            else:
                config = policy.actions[following]
                created = await create_followup(
                    connection,
                    policy=policy,
                    source=source,
                    incident=target,
                    rule=watch["rule"],
                    action_name=following,
                    config=config,
                    verify=effective_verify(rule.verify if rule else None, config.verify),
                    force_approval=True,
                    scheduler=self.scheduler,
                    redact=self.redact,
                    why=f"{watch['action_name']!r} {verdict.outcome.value}",
                    now=now,
                )
                said = created.message
                if created.wake_at is not None:
                    wakes.append(created.wake_at)
            text = f"{verdict.message}. Escalating: {said}"
            await notifications_repo.enqueue(
                connection,
                incident_id=watch["incident_id"],
                kind="update",
                text=self.redact.text(text),
                now=now,
                action_id=watch["action_id"],
            )
            return [_note(watch, f"escalated: {said}; the chat thread was told", "escalate")]
        undo = rollback_of(policy, watch["action_name"], source["config"]["action"])
        if isinstance(undo, str):
            return [_note(watch, f"no rollback: {undo}", "rollback")]
        name, config = undo
        created = await create_followup(
            connection,
            policy=policy,
            source=source,
            incident=incident,
            rule=watch["rule"],
            action_name=name,
            config=config,
            verify=config.verify,
            force_approval=False,
            scheduler=self.scheduler,
            redact=self.redact,
            why=f"rollback of {watch['action_name']!r}, {verdict.outcome.value}",
            now=now,
        )
        if created.wake_at is not None:
            wakes.append(created.wake_at)
        return [_note(watch, f"rolling back: {created.message}", "rollback")]


def _resolution(watch: dict[str, Any], incident: dict[str, Any]) -> dict[str, Any] | None:
    """When the incident resolved by ``within_at`` and the watch does not know yet: the
    resolution, and the end of the quiet window (from the resolution, or from the
    action's success if the incident had resolved already)."""
    resolved_at = incident["resolved_at"]
    if (
        watch["resolved_at"] is not None
        or incident["status"] != IncidentStatus.RESOLVED.value
        or resolved_at > watch["within_at"]
    ):
        return None
    quiet_from = max(resolved_at, watch["started_at"])
    return {
        "resolved_at": resolved_at,
        "quiet_until": quiet_from + timedelta(seconds=watch["quiet_for"]),
    }


def verify_of(snapshot: dict[str, Any], after: ActionState) -> Verify | None:
    """The verification the action was created with (its snapshot), or, for an action
    created without that record, its own ``verify`` key."""
    if "verify" in snapshot:
        return Verify.model_validate(snapshot["verify"])
    return effective_verify(None, after.config.verify)


def _note(watch: dict[str, Any], message: str, choice: str) -> TimelineEntry:
    return TimelineEntry(
        EventKind.ACTION_OUTCOME,
        message,
        {"on_ineffective": choice},
        action_id=watch["action_id"],
    )


def _evidence(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": alert["id"],
        "alertname": alert["labels"].get("alertname"),
        "fingerprint": alert["fingerprint"],
        "incident_id": alert["incident_id"],
        "received_at": alert["received_at"].isoformat(),
    }


def _describe(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return "no alert recorded"
    names = []
    for alert in alerts[:5]:
        labels = alert["labels"]
        rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
        names.append(f"{labels.get('alertname', '?')}{{{rest}}}")
    more = f" and {len(alerts) - 5} more" if len(alerts) > 5 else ""
    return ", ".join(names) + more
