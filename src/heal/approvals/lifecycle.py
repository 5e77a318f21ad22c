"""Pending approvals whose action can no longer run end ``obsolete``.

An approval asks whether an action may run; once the action cannot run (its incident
resolved, it was cancelled, it ended some other way) the question is moot, and a
signature must not revive it. Each function here runs inside the caller's write
transaction, so the action's change, the approval's end, the card's update (outbox)
and the timeline entry commit together; run twice, the second finds nothing pending.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.rating_prompt import ask_for_ratings
from heal.domain.actions import ActionStatus
from heal.domain.approvals import ApprovalStatus, OnResolve
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.store import actions_repo, approvals_repo, notifications_repo, timeline_repo
from heal.store.tables import approvals

INCIDENT_RESOLVED = "the incident resolved while it was pending"


def skipped_while_waiting(message: str, now: datetime) -> dict[str, Any]:
    """The columns of a waiting action that ends ``skipped``: no wake, poll or expiry left."""
    return {
        "status": ActionStatus.SKIPPED.value,
        "message": message,
        "finished_at": now,
        "next_wake_at": None,
        "next_poll_at": None,
        "approval_expires_at": None,
        "inflight_key": None,
        "claimed_until": None,
    }


async def end_obsolete(
    connection: AsyncConnection,
    action: dict[str, Any],
    reason: str,
    now: datetime,
    redact: Redactor,
    *,
    action_skipped: bool = False,
) -> bool:
    """End the action's pending approval as obsolete; False if none was pending."""
    approval = await approvals_repo.for_action(connection, action["id"])
    if approval is None or not await approvals_repo.finish(
        connection, approval["id"], ApprovalStatus.OBSOLETE, now, None, reason
    ):
        return False
    message = f"approval #{approval['id']} obsolete: {reason}" + (
        "; action skipped" if action_skipped else ""
    )
    data: dict[str, Any] = {"approval_id": approval["id"], "approval_status": "obsolete"}
    if action_skipped:
        data.update(status=ActionStatus.SKIPPED.value, disposition="obsolete")
    entry = TimelineEntry(EventKind.ACTION_STATUS, message, data, action_id=action["id"])
    await timeline_repo.append(connection, action["incident_id"], [entry], now, redact)
    # An update (not a card): the dispatcher closes the card of a decided approval.
    await notifications_repo.enqueue(
        connection,
        incident_id=action["incident_id"],
        kind="update",
        text=message,
        now=now,
        approval_id=approval["id"],
        action_id=action["id"],
    )
    return True


async def on_incidents_resolved(
    connection: AsyncConnection, incident_ids: list[int], now: datetime, redact: Redactor
) -> int:
    """Skip the waiting actions of resolved incidents whose approval says ``obsolete``;
    then ask each incident's chat thread to rate its remediation (``rating_prompt``)."""
    if not incident_ids:
        return 0
    pending = (
        await connection.execute(
            select(approvals.c.action_id)
            .where(
                approvals.c.incident_id.in_(incident_ids),
                approvals.c.status == ApprovalStatus.PENDING.value,
            )
            .order_by(approvals.c.action_id)
        )
    ).scalars()
    ended = 0
    for action_id in list(pending):
        action = await actions_repo.load(connection, action_id, for_update=True)
        if action is None or action["status"] != ActionStatus.WAITING.value:
            continue  # decided meanwhile; whoever moved it ended the approval
        if on_resolve(action) is OnResolve.KEEP:
            continue
        skipped = await actions_repo.update_if_version(
            connection,
            action_id,
            action["version"],
            skipped_while_waiting(f"approval obsolete: {INCIDENT_RESOLVED}", now),
        )
        if skipped and await end_obsolete(
            connection, action, INCIDENT_RESOLVED, now, redact, action_skipped=True
        ):
            ended += 1
    await ask_for_ratings(connection, incident_ids, now)
    return ended


def on_resolve(action: dict[str, Any]) -> OnResolve:
    """The choice recorded with the action when it asked (older actions: the default)."""
    recorded = (action["config"].get("approval") or {}).get("on_resolve")
    return OnResolve(recorded) if recorded else OnResolve.OBSOLETE
