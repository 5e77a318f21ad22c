"""At action creation: silenced, auto-approved, or waiting for people."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.notices import announce
from heal.domain.actions import ActionStatus
from heal.domain.approvals import HEAL_REQUESTER, ApprovalStatus, RiskLevel, TimeWindow
from heal.domain.matchers import LabelMatcher, matches_all
from heal.domain.notifications import Event
from heal.policy.models import ActionBase, ApprovalRequirement, AutoApprove, Policy
from heal.store import approvals_repo, notifications_repo
from heal.store.tables import actions


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    matchers: list[LabelMatcher]
    comment: str
    created_by: str
    ends_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Silence:
        return cls(
            row["id"],
            [LabelMatcher.parse(k, v) for k, v in row["matchers"].items()],
            row["comment"],
            row["created_by"],
            row["ends_at"],
        )

    def silences(self, labels: dict[str, str]) -> bool:
        return matches_all(self.matchers, labels)


def requirement(policy: Policy, config: ActionBase) -> ApprovalRequirement | None:
    """What approval this action needs, or None when it needs none."""
    needs = config.needs_approval if config.needs_approval is not None else policy.approval.enabled
    if not needs:
        return None
    return config.approval or policy.approval.require


async def auto_approval(
    connection: AsyncConnection,
    policy: Policy,
    config: ActionBase,
    rule: str,
    action: str,
    labels: dict[str, str],
    now: datetime,
    decision: Mapping[str, Any] | None = None,
) -> tuple[AutoApprove, str] | None:
    """The first auto-approve condition that holds, with the reason it held. ``decision``:
    what chose the action, when a decision did (its tier, confidence, lower bound)."""
    history: tuple[int, int] | None = None
    for condition in policy.approval.auto_approve:
        reasons = _decision_reasons(condition, decision)
        if reasons is None:
            continue
        if condition.max_risk is not None:
            if RiskLevel.parse(config.risk) > RiskLevel.parse(condition.max_risk):
                continue
            reasons.append(f"risk {config.risk} ≤ {condition.max_risk}")
        if condition.labels:
            if not matches_all(
                [LabelMatcher.parse(k, v) for k, v in condition.labels.items()], labels
            ):
                continue
            reasons.append("labels match")
        if condition.windows:
            if not any(TimeWindow.parse(w).contains(now) for w in condition.windows):
                continue
            reasons.append("inside its time window")
        if condition.min_success_rate is not None or condition.min_runs:
            if history is None:
                history = await _history(connection, rule, action)
            successes, runs = history
            rate = successes / runs if runs else 0.0
            if runs < condition.min_runs:
                continue
            if condition.min_success_rate is not None and rate < condition.min_success_rate:
                continue
            reasons.append(f"success rate {rate:.0%} over {runs} runs")
        return condition, ", ".join(reasons) or "unconditional"
    return None


def _decision_reasons(
    condition: AutoApprove, decision: Mapping[str, Any] | None
) -> list[str] | None:
    """Why the condition's decision keys hold (none given: nothing to say), or None when
    they do not: the action was not decided, or not well enough."""
    if (
        not condition.tiers
        and condition.min_confidence is None
        and condition.min_lower_bound is None
    ):
        return []
    if not decision:
        return None
    reasons: list[str] = []
    tier = str(decision.get("tier") or "")
    if condition.tiers:
        if tier not in condition.tiers:
            return None
        reasons.append(f"decided by the {tier} tier")
    if condition.min_confidence is not None:
        confidence = float(decision.get("confidence") or 0.0)
        if confidence < condition.min_confidence:
            return None
        reasons.append(f"confidence {confidence:.2f} ≥ {condition.min_confidence:.2f}")
    if condition.min_lower_bound is not None:
        bound = decision.get("lower_bound")
        if bound is None or float(bound) < condition.min_lower_bound:
            return None
        reasons.append(f"playbook lower bound {float(bound):.2f} ≥ {condition.min_lower_bound:.2f}")
    return reasons


async def _history(connection: AsyncConnection, rule: str, action: str) -> tuple[int, int]:
    """Measured success of this rule's action: finished runs, and how many succeeded."""
    finished = [ActionStatus.SUCCESS.value, ActionStatus.FAILURE.value]
    row = (
        await connection.execute(
            select(func.count(), func.sum(case((actions.c.status == "success", 1), else_=0))).where(
                actions.c.rule == rule,
                actions.c.action_name == action,
                actions.c.status.in_(finished),
            )
        )
    ).one()
    return int(row[1] or 0), int(row[0] or 0)


def expiry(requirement_: ApprovalRequirement, now: datetime) -> datetime:
    return now + timedelta(seconds=requirement_.expires_in)


def wait_for_approval(
    row: dict[str, Any], config: ActionBase, needed: ApprovalRequirement, now: datetime
) -> None:
    """Make a new action's row wait for people: its wake is the approval's expiry (or, with
    an ITSM approval ticket, now: the ticket is asked for right away)."""
    expires_at = expiry(needed, now)
    row.update(
        status=ActionStatus.WAITING.value,
        next_poll_at=None,
        approval_expires_at=expires_at,
        next_wake_at=expires_at,
    )
    if config.approval_ticket is not None:
        row.update(
            current_node=config.approval_ticket.nodes[0].function,
            next_poll_at=now,
            next_wake_at=now,
        )
    # Kept with the action: what the approval asked for, e.g. its on_resolve choice,
    # must not change with a later policy reload.
    row["config"] = {**row["config"], "approval": needed.model_dump(mode="json")}


async def open_approval(
    connection: AsyncConnection,
    row: dict[str, Any],
    action_id: int,
    needed: ApprovalRequirement,
    now: datetime,
    policy: Policy | None = None,
) -> tuple[int, str]:
    """The pending approval of a waiting action just inserted, and its chat card in the
    outbox. Returns the approval's id and the timeline's sentence about it."""
    risk = row["config"]["action"].get("risk", "medium")
    approval_id = await approvals_repo.insert_one(
        connection,
        {
            "action_id": action_id,
            "incident_id": row["incident_id"],
            "status": ApprovalStatus.PENDING.value,
            "risk": risk,
            "required_signatures": needed.required_signatures,
            "approver_groups": needed.approver_groups,
            "requested_by": HEAL_REQUESTER,
            "requested_at": now,
            "expires_at": row["approval_expires_at"],
        },
    )
    groups = f" from {', '.join(needed.approver_groups)}" if needed.approver_groups else ""
    await notifications_repo.enqueue(
        connection,
        incident_id=row["incident_id"],
        kind="card",
        text=f"{row['action_name']} (risk {risk}) awaits approval",
        now=now,
        approval_id=approval_id,
        action_id=action_id,
    )
    if policy is not None:
        await announce(
            connection,
            policy,
            Event.APPROVAL_REQUESTED,
            row["incident_id"],
            f"{row['action_name']!r} (risk {risk}) awaits approval{groups}",
            now,
            action={**row, "id": action_id},
            approval_id=approval_id,
        )
    message = (
        f"approval #{approval_id} requested: {needed.required_signatures} signature(s)"
        f"{groups}, risk {risk}, expires {row['approval_expires_at']:%Y-%m-%d %H:%M:%S} UTC"
    )
    return approval_id, message
