"""Signing, rejecting and expiring approvals; chat updates when an action moves on.

Every outcome is decided inside one write transaction that first locks the action row
(then the approval), and applies the action's change under its version check: an
approval racing the expiry, or two approvers racing for the last signature, end in
exactly one outcome and the action runs at most once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.lifecycle import end_obsolete, skipped_while_waiting
from heal.approvals.notices import announce
from heal.approvals.outcomes import outcome_text
from heal.domain.actions import ActionStatus
from heal.domain.approvals import (
    ApprovalStatus,
    Signer,
    SignRefused,
    check_may_sign,
    counted_signatures,
    quorum_reached,
)
from heal.domain.notifications import Event
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.engine.create import step_functions
from heal.engine.engine import utcnow
from heal.engine.interfaces import WakeScheduler
from heal.engine.machine import ActionState
from heal.policy.models import Policy
from heal.store import (
    actions_repo,
    approvals_repo,
    notifications_repo,
    timeline_repo,
)
from heal.store.db import Database


class ApprovalNotFound(Exception):
    pass


class ApprovalClosed(Exception):
    """The approval is no longer pending (409)."""

    def __init__(self, status: str, reason: str | None = None) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f"the approval is {status}{why}, no longer pending")
        self.status = status


@dataclass(frozen=True, slots=True)
class SignResult:
    approval_status: ApprovalStatus
    action_status: ActionStatus
    signatures: int
    required: int


Rejected = Callable[[AsyncConnection, dict[str, Any], datetime], Awaitable[None]]


class ApprovalService:
    def __init__(
        self,
        database: Database,
        scheduler: WakeScheduler,
        redact: Redactor | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        announce_outcomes: bool = False,
        policy: Callable[[], Policy] | None = None,
        on_rejected: Rejected | None = None,
    ) -> None:
        # Told, in the rejection's commit, of an action people rejected (it is skipped
        # without an engine transition): a decision learns from it (wired by heal.app).
        self.on_rejected = on_rejected
        # The current policy, for routed notifications (``notifications:``) of decisions.
        self.policy = policy
        self.db = database
        self.scheduler = scheduler
        self.redact = redact or Redactor()
        self.clock = clock
        # Whether a chat is configured: the end of every executor action is news for the
        # incident's thread (an http action's is news only where people were asked).
        self.announce_outcomes = announce_outcomes

    async def sign(
        self,
        approval_id: int,
        signer: Signer,
        *,
        approve: bool,
        comment: str = "",
        channel: str = "api",
    ) -> SignResult:
        now = self.clock()
        wake_at: datetime | None = None
        async with self.db.write() as connection:
            approval = await approvals_repo.get(connection, approval_id)
            if approval is None:
                raise ApprovalNotFound(approval_id)
            action = await actions_repo.load(connection, approval["action_id"], for_update=True)
            approval = await approvals_repo.get(connection, approval_id, for_update=True)
            assert action is not None
            assert approval is not None
            if approval["status"] != ApprovalStatus.PENDING.value:
                obsolete = approval["status"] == ApprovalStatus.OBSOLETE.value
                raise ApprovalClosed(approval["status"], approval["reason"] if obsolete else None)
            if now >= approval["expires_at"] or action["status"] != ActionStatus.WAITING.value:
                raise ApprovalClosed(
                    "expired"
                    if now >= approval["expires_at"]
                    else f"moot (action {action['status']})"
                )
            signed = await approvals_repo.signatures(connection, approval_id)
            try:
                check_may_sign(
                    signer,
                    requester=approval["requested_by"],
                    approver_groups=approval["approver_groups"],
                    already_signed=[s["signer"] for s in signed],
                )
            except SignRefused:
                raise
            await approvals_repo.add_signature(
                connection,
                {
                    "approval_id": approval_id,
                    "signer": signer.name,
                    "decision": "approve" if approve else "reject",
                    "comment": comment or None,
                    "channel": channel,
                    "at": now,
                },
            )
            before = [s["channel"] for s in signed if s["decision"] == "approve"]
            approvals_so_far = counted_signatures([*before, channel])
            required = approval["required_signatures"]
            notes: list[TimelineEntry] = []
            who = f"{signer.name} via {channel}"
            say = f": {comment}" if comment else ""
            if not approve:
                await approvals_repo.finish(
                    connection,
                    approval_id,
                    ApprovalStatus.REJECTED,
                    now,
                    signer.name,
                    comment or None,
                )
                await self._move_action(
                    connection,
                    action,
                    skipped_while_waiting(f"rejected by {who}{say}", now),
                )
                if self.on_rejected is not None:
                    await self.on_rejected(connection, action, now)
                notes.append(
                    _entry(
                        action,
                        EventKind.ACTION_STATUS,
                        f"approval rejected by {who}{say}; action skipped",
                        status="skipped",
                        approval_id=approval_id,
                    )
                )
                result = SignResult(
                    ApprovalStatus.REJECTED,
                    ActionStatus.SKIPPED,
                    counted_signatures(before),
                    required,
                )
            elif quorum_reached(approvals_so_far, required):
                await approvals_repo.finish(
                    connection,
                    approval_id,
                    ApprovalStatus.APPROVED,
                    now,
                    signer.name,
                    comment or None,
                )
                await self._move_action(
                    connection,
                    action,
                    {
                        "status": ActionStatus.RECEIVED.value,
                        "approval_expires_at": None,
                        # from an ITSM approval ticket's node, if one was asking as well
                        "current_node": step_functions(action["config"]["action"])[0],
                        "poll": 0,
                        "attempt": 0,
                        "framework_errors": 0,
                        "next_poll_at": now,
                        "next_wake_at": now,
                        "claimed_until": None,
                    },
                )
                await self.scheduler.schedule(connection, action["id"], action["version"] + 1, now)
                wake_at = now
                notes.append(
                    _entry(
                        action,
                        EventKind.ACTION_STATUS,
                        f"approved by {who} ({approvals_so_far} of {required})"
                        f"{say}; action will run",
                        status="received",
                        approval_id=approval_id,
                    )
                )
                result = SignResult(
                    ApprovalStatus.APPROVED, ActionStatus.RECEIVED, approvals_so_far, required
                )
            else:
                notes.append(
                    _entry(
                        action,
                        EventKind.ACTION_STATUS,
                        f"signed by {who} ({approvals_so_far} of {required}){say}",
                        status="waiting",
                        approval_id=approval_id,
                    )
                )
                result = SignResult(
                    ApprovalStatus.PENDING, ActionStatus.WAITING, approvals_so_far, required
                )
            await timeline_repo.append(connection, action["incident_id"], notes, now, self.redact)
            if self.policy is not None and result.approval_status is not ApprovalStatus.PENDING:
                await announce(
                    connection,
                    self.policy(),
                    Event.APPROVAL_DECIDED,
                    action["incident_id"],
                    notes[-1].message,
                    now,
                    redact=self.redact,
                    action=action,
                    approval_id=approval_id,
                )
            # Every signature is said under the card, the partial ones too.
            await notifications_repo.enqueue(
                connection,
                incident_id=action["incident_id"],
                kind="update",
                text=notes[-1].message,
                now=now,
                approval_id=approval_id,
                action_id=action["id"],
            )
        if wake_at is not None:
            self.scheduler.committed(wake_at)
        return result

    async def _move_action(
        self, connection: AsyncConnection, action: dict[str, Any], values: dict[str, Any]
    ) -> None:
        moved = await actions_repo.update_if_version(
            connection, action["id"], action["version"], values
        )
        if not moved:  # cannot happen under the row lock; refuse rather than guess
            raise ApprovalClosed("moot (the action changed meanwhile)")

    # -- the engine's hook: runs inside the transaction of every committed transition -----
    async def on_transition(
        self, connection: AsyncConnection, before: dict[str, Any], after: ActionState, now: datetime
    ) -> None:
        if after.status.value == before["status"]:
            return
        if after.approval_outcome == "expired":
            await self._expired(connection, before, now)
        elif after.approval_outcome in ("approved", "rejected"):
            await self._decided_by_ticket(connection, before, after, now)
        elif before["status"] == ActionStatus.WAITING.value and after.status.is_terminal:
            # Cancelled (or failed in an approval ticket's nodes) while waiting: nothing
            # is left for the approval to allow. Its update closes the card.
            reason = f"its action ended {after.status.value}" + (
                f": {after.message}" if after.message else ""
            )
            if await end_obsolete(connection, before, reason, now, self.redact):
                return
        await self._news(connection, before, after, now)

    async def _news(
        self, connection: AsyncConnection, before: dict[str, Any], after: ActionState, now: datetime
    ) -> None:
        """Where people were asked, each move of the action is news in the card's thread;
        an executor action's end is news in the incident's thread in any case."""
        approval = await approvals_repo.for_action(connection, before["id"])
        ended = after.status in (ActionStatus.SUCCESS, ActionStatus.FAILURE)
        # A notify step that succeeded has its own message in the thread: no second line.
        queued = after.config.type == "notify" and after.status is ActionStatus.SUCCESS
        executor = after.config.type != "http" and not queued
        if ended and executor and (approval is not None or self.announce_outcomes):
            text = outcome_text(before, after, now)
        elif approval is not None and (ended or after.status is ActionStatus.RUNNING):
            text = f"action {before['action_name']!r} {after.status.value}" + (
                f": {after.message}" if after.message else ""
            )
        else:
            return
        await notifications_repo.enqueue(
            connection,
            incident_id=before["incident_id"],
            kind="update",
            text=text,
            now=now,
            approval_id=approval["id"] if approval is not None else None,
            action_id=before["id"],
        )

    async def _decided_by_ticket(
        self, connection: AsyncConnection, action: dict[str, Any], after: ActionState, now: datetime
    ) -> None:
        """The ITSM approval ticket decided: record it as the approval's outcome."""
        approval = await approvals_repo.for_action(connection, action["id"])
        if approval is None:
            return
        status = (
            ApprovalStatus.APPROVED
            if after.approval_outcome == "approved"
            else ApprovalStatus.REJECTED
        )
        who = str(after.outputs.get("approver") or "itsm")
        if await approvals_repo.finish(
            connection, approval["id"], status, now, f"itsm:{who}", after.message
        ):
            await approvals_repo.add_signature(
                connection,
                {
                    "approval_id": approval["id"],
                    "signer": f"itsm:{who}",
                    "decision": "approve" if status is ApprovalStatus.APPROVED else "reject",
                    "comment": None,
                    "channel": "itsm",
                    "at": now,
                },
            )
            await notifications_repo.enqueue(
                connection,
                incident_id=action["incident_id"],
                kind="update",
                text=f"approval {status.value} in the ITSM ticket by {who}",
                now=now,
                approval_id=approval["id"],
                action_id=action["id"],
            )

    async def _expired(
        self, connection: AsyncConnection, action: dict[str, Any], now: datetime
    ) -> None:
        """The approval expired and the action is skipped; the incident stays as its
        alerts say (open while any fires): resolving incidents is the alerts' business."""
        approval = await approvals_repo.for_action(connection, action["id"])
        if approval is None or not await approvals_repo.finish(
            connection, approval["id"], ApprovalStatus.EXPIRED, now, None, "timeout"
        ):
            return
        notes = [
            _entry(
                action,
                EventKind.ACTION_STATUS,
                "approval expired unanswered: action skipped (disposition timeout)",
                status="skipped",
                approval_id=approval["id"],
                disposition="timeout",
            )
        ]
        await notifications_repo.enqueue(
            connection,
            incident_id=action["incident_id"],
            kind="update",
            text=notes[0].message,
            now=now,
            approval_id=approval["id"],
            action_id=action["id"],
        )
        await timeline_repo.append(connection, action["incident_id"], notes, now, self.redact)

    # -- the sweeper ------------------------------------------------------------------------
    async def expired_batch(self, limit: int) -> list[tuple[int, int]]:
        """(action id, version) of waiting actions whose approval is past its expiry."""
        now = self.clock()
        found: list[tuple[int, int]] = []
        orphans: list[int] = []
        async with self.db.read() as connection:
            due = await approvals_repo.expired_pending(connection, now, limit)
            for item in due:
                row = await actions_repo.load(connection, item["action_id"], snapshots=False)
                if row is not None and row["status"] == ActionStatus.WAITING.value:
                    found.append((row["id"], row["version"]))
                elif row is not None and ActionStatus(row["status"]).is_terminal:
                    orphans.append(row["id"])
        if orphans:
            await self._end_orphans(orphans, now)
        return found

    async def _end_orphans(self, action_ids: list[int], now: datetime) -> None:
        """Approvals left pending by actions that ended without them (before heal ended
        such approvals): obsolete, so they neither linger nor hold up the sweep."""
        async with self.db.write() as connection:
            for action_id in action_ids:
                action = await actions_repo.load(connection, action_id, for_update=True)
                if action is None or not ActionStatus(action["status"]).is_terminal:
                    continue
                reason = f"its action had already ended {action['status']}"
                await end_obsolete(connection, action, reason, now, self.redact)


def _entry(action: dict[str, Any], kind: EventKind, message: str, **data: Any) -> TimelineEntry:
    return TimelineEntry(kind, message, data, action_id=action["id"])
