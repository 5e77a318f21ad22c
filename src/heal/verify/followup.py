"""Actions verification starts: the rule's next action (escalate) or a rollback.

They are created as ingest creates actions (``engine.create.new_action_row`` and the
approval gate's ``wait_for_approval``/``open_approval``), in the transaction of the
verdict, so a verdict and what it started commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.gate import open_approval, requirement, wait_for_approval
from heal.domain.actions import ActionStatus, Signal
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.engine.create import (
    block,
    incident_context,
    inflight_key,
    new_action_row,
    snapshot_verify,
)
from heal.engine.interfaces import WakeScheduler
from heal.governors import limits
from heal.policy.models import ActionBase, Policy, Rule, Verify
from heal.policy.plugins import parse_action
from heal.store import actions_repo, timeline_repo

# Keys of a kubernetes action that do not carry over to the rollback of its target.
_NOT_FOR_ROLLBACK = ("replicas", "bounds", "to_revision", "verify", "rollback", "fallback")


@dataclass(frozen=True, slots=True)
class Created:
    """What a follow-up came to: the new action (None: not created) and why, in words."""

    action_id: int | None
    message: str
    wake_at: datetime | None = None


def next_action(rule: Rule | None, action_name: str) -> str | None:
    """The action after ``action_name`` in the rule's ``actions``, if there is one."""
    if rule is None:
        return None
    names = [ref.action for ref in rule.actions]
    if action_name not in names:
        return None
    index = names.index(action_name)
    return names[index + 1] if index + 1 < len(names) else None


def rollback_of(
    policy: Policy, action_name: str, snapshot: dict[str, Any]
) -> tuple[str, ActionBase] | str:
    """The action that undoes this one (its name and config), or why there is none.

    The declared ``rollback:`` names an action of the policy in force; a kubernetes action
    without one is undone by a rollback operation of the same target (``kubectl rollout
    undo``).
    """
    declared = snapshot.get("rollback")
    if isinstance(declared, str):
        config = policy.actions.get(declared)
        if config is None:
            return f"its rollback {declared!r} is no longer defined"
        return declared, config
    if snapshot.get("type") == "kubernetes":
        data = {k: v for k, v in snapshot.items() if k not in _NOT_FOR_ROLLBACK}
        data["operation"] = "rollback"
        data["description"] = f"roll back what {action_name!r} did"
        return f"{action_name}-rollback", parse_action(data)
    return "it declares no rollback"


async def create_followup(
    connection: AsyncConnection,
    *,
    policy: Policy,
    source: dict[str, Any],
    incident: dict[str, Any],
    rule: str,
    action_name: str,
    config: ActionBase,
    verify: Verify | None,
    force_approval: bool,
    scheduler: WakeScheduler,
    redact: Redactor,
    why: str,
    now: datetime,
) -> Created:
    """A new action for ``incident``, started by verification of ``source``.

    ``force_approval``: people decide whether it runs (a pending approval, whatever the
    action's own needs_approval says). Otherwise it passes the usual gate: asks for
    approval when it needs one, runs at once when it does not.
    """
    key = inflight_key(incident["id"], rule, action_name)
    running = await actions_repo.in_flight(connection, [key])
    if key in running:
        return Created(None, f"{action_name!r} is already in flight (#{running[key]})")
    context = source.get("context") or {}
    row = new_action_row(
        incident_id=incident["id"],
        alert_id=source.get("alert_id"),
        rule=rule,
        action_name=action_name,
        config=config,
        signal=Signal(source.get("signal") or Signal.FIRING.value),
        alert=context.get("alert") or {},
        incident=incident_context(incident),
        settings=policy.settings,
        now=now,
    )
    snapshot_verify(row, verify)
    needed = requirement(policy, config)
    verdict = None
    if row["status"] == ActionStatus.RECEIVED.value:
        labels = (context.get("alert") or {}).get("labels") or {}
        verdict = await limits.check(
            connection, policy, config, action_name, row["target"], now, labels=labels
        )
    if verdict is not None and verdict.mode == "block":
        block(row, verdict.reason, now)
        row.pop("_gate_note")  # the follow-up's own timeline entry says it, with the reason
    if (force_approval or verdict is not None) and needed is None:
        needed = config.approval or policy.approval.require
    if row["status"] == ActionStatus.RECEIVED.value and needed is not None:
        wait_for_approval(row, config, needed, now)
    else:
        needed = None
    (action_id,) = await actions_repo.insert_many(connection, [row])
    entries = [
        TimelineEntry(
            EventKind.ACTION_CREATED,
            f"action {action_name!r} created by verification of #{source['id']} ({why})"
            + (f": {row['message']}" if row.get("message") else ""),
            {"status": row["status"], "signal": row["signal"], "source_action_id": source["id"]},
            action_id=action_id,
        )
    ]
    said = f"{action_name!r} created (#{action_id})"
    if needed is not None:
        approval_id, message = await open_approval(connection, row, action_id, needed, now, policy)
        entries.append(
            TimelineEntry(
                EventKind.ACTION_STATUS,
                message,
                {"status": "waiting", "approval_id": approval_id},
                action_id=action_id,
            )
        )
        said = f"approval #{approval_id} requested for {action_name!r} (#{action_id})"
    await timeline_repo.append(connection, incident["id"], entries, now, redact)
    wake_at: datetime | None = row["next_wake_at"]
    if wake_at is not None:
        await scheduler.schedule(connection, action_id, 0, wake_at)
    return Created(action_id, said, wake_at)
