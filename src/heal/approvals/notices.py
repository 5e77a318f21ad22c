"""Routed notifications: an event, decided in a transaction, written into the outbox by
that same transaction, one row per channel the policy's ``notifications:`` routes it to.

The dispatcher sends them after commit (``approvals.dispatcher``). Nothing here ever
fails the caller's decision for a notification's sake: a route that matches nothing
writes nothing, and a channel that refuses later is the dispatcher's business.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import ActionStatus
from heal.domain.notifications import CHAT_CHANNELS, Event, action_events
from heal.domain.redaction import Redactor
from heal.engine.engine import utcnow
from heal.engine.interfaces import Unroutable
from heal.engine.machine import ActionState
from heal.policy.models import Policy
from heal.store import incidents_repo, notifications_repo
from heal.store.db import Database

# The event name a notify step's message is recorded under (``heal notifications list``).
STEP_EVENT = "notify"

_TITLES = {
    Event.INCIDENT_OPENED: "Incident opened",
    Event.INCIDENT_RESOLVED: "Incident resolved",
    Event.ACTION_STARTED: "Action started",
    Event.ACTION_SUCCEEDED: "Action succeeded",
    Event.ACTION_FAILED: "Action failed",
    Event.ACTION_BLOCKED: "Action blocked",
    Event.OUTCOME_VERIFIED: "Fix verified",
    Event.OUTCOME_INEFFECTIVE: "Fix ineffective",
    Event.OUTCOME_RELAPSED: "Incident relapsed",
    Event.APPROVAL_REQUESTED: "Approval requested",
    Event.APPROVAL_DECIDED: "Approval decided",
    Event.APPROVAL_EXPIRED: "Approval expired",
}

_VERBS = {ActionStatus.SUCCESS: "succeeded", ActionStatus.FAILURE: "failed"}


def labels_of(incident: dict[str, Any]) -> dict[str, str]:
    """What a route's ``match`` sees: the incident's group labels and its severity."""
    labels = {str(k): str(v) for k, v in (incident.get("group_labels") or {}).items()}
    labels.setdefault("severity", str(incident.get("severity") or ""))
    return labels


async def announce(
    connection: AsyncConnection,
    policy: Policy,
    event: Event,
    incident: dict[str, Any] | int,
    text: str,
    now: datetime,
    *,
    redact: Redactor | None = None,
    action: dict[str, Any] | None = None,
    approval_id: int | None = None,
) -> int:
    """Write ``event`` for every channel a route sends it to; how many rows were written."""
    if not policy.notifications.routes:
        return 0
    if isinstance(incident, int):
        found = await incidents_repo.get(connection, incident)
        if found is None:
            return 0
        incident = found
    labels = labels_of(incident)
    targets = policy.notifications.targets(event, labels)
    if not targets:
        return 0
    redact = redact or Redactor()
    title = f"{_TITLES[event]}: #{incident['id']} {incident['title']}"
    payload: dict[str, Any] = {
        "at": now.isoformat(),
        "incident": {
            "id": incident["id"],
            "title": incident["title"],
            "status": incident["status"],
            "severity": incident.get("severity"),
            "labels": labels,
        },
    }
    if action is not None:
        payload["action"] = {
            "id": action["id"],
            "name": action.get("action_name"),
            "rule": action.get("rule"),
            "status": action.get("status"),
        }
    if approval_id is not None:
        payload["approval"] = {"id": approval_id}
    payload = redact(payload)
    payload["title"] = redact.text(title)
    for channel in targets:
        await notifications_repo.enqueue(
            connection,
            incident_id=incident["id"],
            kind="event",
            text=redact.text(text),
            now=now,
            approval_id=approval_id,
            action_id=action["id"] if action is not None else None,
            channel=channel,
            event=event.value,
            payload=payload,
        )
    return len(targets)


class NotificationHook:
    """The engine's transition hook for routed events: an action started, succeeded,
    failed or was blocked; its approval expired or was decided in an ITSM ticket."""

    def __init__(self, policy: Callable[[], Policy], redact: Redactor | None = None) -> None:
        self.policy = policy
        self.redact = redact or Redactor()

    async def on_transition(
        self, connection: AsyncConnection, before: dict[str, Any], after: ActionState, now: datetime
    ) -> None:
        policy = self.policy()
        if not policy.notifications.routes:
            return
        action = {**before, "status": after.status.value}
        name = before["action_name"]
        found: list[tuple[Event, str]] = []
        if after.approval_outcome == "expired":
            found.append((Event.APPROVAL_EXPIRED, f"approval of {name!r} expired unanswered"))
        elif after.approval_outcome in ("approved", "rejected"):
            said = f"approval of {name!r} {after.approval_outcome} in the ITSM ticket"
            found.append((Event.APPROVAL_DECIDED, said))
        what = f"{after.config.type} action {name!r}"
        for event in action_events(before["status"], after.status):
            if event is Event.ACTION_STARTED:
                found.append((event, f"{what} started"))
                continue
            text = f"{what} {_VERBS.get(after.status, after.status.value)}"
            if after.message:
                text += f": {after.message}"
            found.append((event, text))
        for event, text in found:
            await announce(
                connection,
                policy,
                event,
                before["incident_id"],
                text,
                now,
                redact=self.redact,
                action=action,
            )


class StepOutbox:
    """``engine.interfaces.MessageOutbox``: a ``notify`` step's message, queued as a routed
    row of its one channel, so the dispatcher's sender delivers it like any event."""

    def __init__(
        self,
        database: Database,
        policy: Callable[[], Policy],
        chats: Collection[str],
        redact: Redactor,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.policy = policy
        self.chats = frozenset(chats)
        self.redact = redact
        self.clock = clock

    async def queue(
        self,
        *,
        key: str,
        incident_id: int,
        action_id: int,
        channel: str,
        title: str,
        text: str,
        payload: Mapping[str, Any],
    ) -> int:
        if channel in CHAT_CHANNELS:
            if channel not in self.chats:
                raise Unroutable(f"channel {channel} is not configured (settings)")
        elif channel not in self.policy().notifications.channels:
            raise Unroutable(f"channel {channel} is not under notifications.channels")
        body = self.redact(dict(payload))
        body["title"] = self.redact.text(title)
        async with self.db.write() as connection:
            return await notifications_repo.enqueue(
                connection,
                incident_id=incident_id,
                kind="event",
                text=self.redact.text(text),
                now=self.clock(),
                action_id=action_id,
                channel=channel,
                event=STEP_EVENT,
                payload=body,
                dedupe_key=f"notify:{key}",
            )


def delivery_record(row: dict[str, Any]) -> dict[str, Any]:
    """One outbox row as people read it: a routed event names its one channel; a chat
    card or update names the chats it reached so far."""
    routed = row["kind"] == "event"
    reached = [p for p in (row["sent_to"] or "").split(",") if p]
    return {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "action_id": row["action_id"],
        "approval_id": row["approval_id"],
        "kind": row["kind"],
        "event": row["event"],
        "channel": row["channel"] if routed else ",".join(reached) or None,
        "status": row["status"],
        "attempts": row["attempts"],
        "text": row["text"],
        "error": row["error"],
        "created_at": row["created_at"],
        "next_attempt_at": row["next_attempt_at"] if row["status"] == "pending" else None,
    }
