"""At action creation: silenced, auto-approved, or waiting for people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import ActionStatus
from heal.domain.approvals import RiskLevel, TimeWindow
from heal.domain.matchers import LabelMatcher, matches_all
from heal.policy.models import ActionBase, ApprovalRequirement, AutoApprove, Policy
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
) -> tuple[AutoApprove, str] | None:
    """The first auto-approve condition that holds, with the reason it held."""
    history: tuple[int, int] | None = None
    for condition in policy.approval.auto_approve:
        reasons = []
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
