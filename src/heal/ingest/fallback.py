"""``fallback: <action>``: when an action fails for good, its fallback runs next.

A :class:`~heal.engine.interfaces.TransitionHook`: the fallback's action row, its
approval and its first wake are written inside the transaction that commits the failure,
so a crash can lose neither (nor start it twice). The fallback is a new action of the
same incident and rule, built from the failed action's alert and incident snapshot and
the policy in force, and it goes through the same gate as any new action (silences,
approval). It is not started when a person cancelled the action (``user_abort``), nor
when whether the action ran is unknown (``outcome_unknown``): a person must look first.
A chain of fallbacks never runs the same action twice (A -> B -> A stops before A).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import ActionStatus, FailureType, Signal
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind
from heal.engine.interfaces import WakeScheduler
from heal.engine.machine import ActionState
from heal.ingest.create import NewAction, create_action
from heal.policy.models import effective_verify
from heal.policy.ruleset import RuleSet
from heal.store import timeline_repo

# Failures a fallback answers; the others need a person (see the module's docstring).
FALLS_BACK = frozenset(
    {
        FailureType.EXECUTE_FAILURE,
        FailureType.TIMEOUT,
        FailureType.FRAMEWORK_CODE_FAILURE,
        FailureType.CALLBACK_FAILURE,
    }
)
_WHY_NOT = {
    FailureType.USER_ABORT: "it was cancelled",
    FailureType.OUTCOME_UNKNOWN: "whether it ran is unknown; a person must look first",
}


class FallbackHook:
    def __init__(
        self,
        scheduler: WakeScheduler,
        rules: Callable[[], RuleSet],
        redact: Redactor | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.rules = rules
        self.redact = redact or Redactor()

    async def on_transition(
        self,
        connection: AsyncConnection,
        before: dict[str, Any],
        after: ActionState,
        now: datetime,
    ) -> None:
        fallback = after.config.fallback
        if (
            fallback is None
            or after.status is not ActionStatus.FAILURE
            or before["status"] == ActionStatus.FAILURE.value
        ):
            return
        notes = _Notes(before["incident_id"], now)
        try:
            await self._fall_back(connection, before, after, fallback, notes)
        finally:
            await timeline_repo.append_rows(connection, notes.rows, self.redact)

    async def _fall_back(
        self,
        connection: AsyncConnection,
        before: dict[str, Any],
        after: ActionState,
        fallback: str,
        notes: _Notes,
    ) -> None:
        failed = before["action_name"]
        failure = after.failure_type
        if failure not in FALLS_BACK:
            ended = failure.value if failure else "failure"
            why = (_WHY_NOT.get(failure) if failure else None) or f"it ended {ended}"
            notes.add(
                before["id"],
                f"{failed} failed; fallback {fallback} not run: {why}",
                fallback=fallback,
            )
            return
        context = before["context"] or {}
        chain = list((context.get("fallback") or {}).get("chain") or [failed])
        if fallback in chain:
            notes.add(
                before["id"],
                f"{failed} failed; fallback {fallback} not run: it already ran in this chain "
                f"({' -> '.join([*chain, fallback])})",
                fallback=fallback,
                chain=chain,
            )
            return
        policy = self.rules().policy
        config = policy.actions.get(fallback)
        if config is None:
            notes.add(
                before["id"],
                f"{failed} failed; fallback {fallback} not run: the policy no longer defines it",
                fallback=fallback,
            )
            return
        rule = next((r for r in policy.rules if r.name == before["rule"]), None)
        created = await create_action(
            connection,
            NewAction(
                incident_id=before["incident_id"],
                incident=context.get("incident") or {},
                alert_id=before["alert_id"],
                alert=context.get("alert") or {},
                rule=before["rule"],
                action_name=fallback,
                config=config,
                signal=Signal(before["signal"]),
                why=f"by rule {before['rule']!r} as the fallback of {failed!r} (#{before['id']})",
                verify=effective_verify(rule.verify if rule else None, config.verify),
                context={"fallback": {"of": before["id"], "chain": [*chain, fallback]}},
                noted={"fallback_of": before["id"]},
            ),
            policy=policy,
            scheduler=self.scheduler,
            note=notes.note,
            now=notes.now,
        )
        if created.action_id is None:
            notes.add(
                before["id"],
                f"{failed} failed; fallback {fallback} is already in flight (#{created.in_flight})",
                fallback=fallback,
                fallback_action_id=created.in_flight,
            )
            return
        notes.add(
            before["id"],
            f"{failed} failed; running fallback {fallback}",
            fallback=fallback,
            fallback_action_id=created.action_id,
            chain=[*chain, fallback],
        )


class _Notes(timeline_repo.PendingRows):
    """Timeline rows of one fallback, of one incident, written together at the end."""

    def __init__(self, incident_id: int, now: datetime) -> None:
        super().__init__(now)
        self.incident_id = incident_id

    def add(
        self,
        action_id: int,
        message: str,
        kind: EventKind = EventKind.ACTION_FALLBACK,
        **data: Any,
    ) -> None:
        self.note(self.incident_id, kind, message, action_id, **data)
