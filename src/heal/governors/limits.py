"""The governors' check of a new action, in the transaction that creates it.

Counted from the action rows, never from memory: an action counts towards a window when it
started within it, or when it has not started yet but is on its way (created within the
window and still in flight: received, or waiting for approval). Rows of the same
transaction not inserted yet (``pending``: the earlier actions of one ingest batch) count
as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import IN_FLIGHT_STATUSES, ActionStatus
from heal.domain.approvals import week_window
from heal.domain.matchers import LabelMatcher, matches_all
from heal.governors import breakers
from heal.observability import metrics
from heal.policy.models import ActionBase, Budget, Policy, RateLimit
from heal.store.locks import serialise
from heal.store.tables import actions

Mode = Literal["approve", "block"]
_OUTCOMES: dict[Mode, str] = {"approve": "approval", "block": "blocked"}
_ON_ITS_WAY = (ActionStatus.RECEIVED.value, ActionStatus.WAITING.value)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the governors say of a new action: it needs an approval, or it is blocked;
    ``governor``: which one said it (freeze, breaker, limit, budget; joined by "+" when
    several did)."""

    mode: Mode
    reason: str
    governor: str = ""


async def check(
    connection: AsyncConnection,
    policy: Policy,
    config: ActionBase,
    action_name: str,
    target: str | None,
    now: datetime,
    pending: Sequence[dict[str, Any]] = (),
    labels: Mapping[str, str] | None = None,
) -> Verdict | None:
    """None: no governor objects. A block wins over an approval; an open breaker, a
    block. ``labels``: the alert's, for the freezes' matchers."""
    verdicts = freezes(policy, labels or {}, now)
    if config.breaker is not None:
        opened = await breakers.evaluate(connection, action_name, target, config.breaker, now)
        if opened is not None:
            metrics.GOVERNOR_DECISIONS.labels("breaker", "blocked").inc()
            return Verdict("block", opened.describe(action_name, target or ""), "breaker")
    if config.limits:
        await serialise(connection, f"limit:{action_name}:{target}")
        same = and_(
            actions.c.action_name == action_name,
            actions.c.target.is_(None) if target is None else actions.c.target == target,
        )
        for limit in config.limits:
            since = now - timedelta(seconds=limit.per)
            counted = await _count(connection, same, since) + sum(
                1
                for row in pending
                if row["action_name"] == action_name
                and row.get("target") == target
                and row["status"] in _ON_ITS_WAY
            )
            over = over_limit(limit, action_name, target, counted)
            if over is not None:
                verdicts.append(over)
    budget = policy.governors.budget
    if budget is not None:
        await serialise(connection, "budget")
        since = now - timedelta(seconds=budget.per)
        counted = await _count(connection, None, since) + sum(
            1 for row in pending if row["status"] in _ON_ITS_WAY
        )
        over = over_budget(budget, counted)
        if over is not None:
            verdicts.append(over)
    verdict = combine(verdicts)
    if verdict is not None:
        # the governors that decided the outcome, not those outranked
        for governor in verdict.governor.split("+"):
            metrics.GOVERNOR_DECISIONS.labels(governor, _OUTCOMES[verdict.mode]).inc()
    return verdict


# Pure parts of the check, shared with replay (``heal.decide.replay``), which counts the
# actions it would have created instead of the rows.
def over_limit(
    limit: RateLimit, action_name: str, target: str | None, counted: int
) -> Verdict | None:
    """The limit's verdict when ``counted`` actions already count towards its window."""
    if counted < limit.max:
        return None
    where = f" on {target}" if target else ""
    return Verdict(
        limit.over,
        f"rate limit of {action_name!r}{where} reached: {counted} in the last "
        f"{limit.per} s (max {limit.max})",
        "limit",
    )


def over_budget(budget: Budget, counted: int) -> Verdict | None:
    """The global budget's verdict when ``counted`` actions already count towards it."""
    if counted < budget.max:
        return None
    return Verdict(
        budget.over,
        f"global budget reached: {counted} actions in the last {budget.per} s (max {budget.max})",
        "budget",
    )


def combine(verdicts: Sequence[Verdict]) -> Verdict | None:
    """One verdict of several: a block wins over an approval; the reasons (and governors)
    of those that decided it are kept."""
    blocked = [v for v in verdicts if v.mode == "block"]
    chosen = blocked or list(verdicts)
    if not chosen:
        return None
    return Verdict(
        chosen[0].mode, "; ".join(v.reason for v in chosen), "+".join(v.governor for v in chosen)
    )


def freezes(policy: Policy, labels: Mapping[str, str], now: datetime) -> list[Verdict]:
    """The change freezes in force now for an alert with these labels."""
    found = []
    for freeze in policy.governors.freeze:
        if not week_window(freeze.window).contains(now):
            continue
        matchers = [LabelMatcher.parse(k, v) for k, v in freeze.match.items()]
        if matches_all(matchers, dict(labels)):
            found.append(
                Verdict(freeze.mode, f"change freeze {freeze.window!r} in force", "freeze")
            )
    return found


async def _count(
    connection: AsyncConnection, same: ColumnElement[bool] | None, since: datetime
) -> int:
    in_flight = [status.value for status in IN_FLIGHT_STATUSES]
    counted = or_(
        actions.c.started_at >= since,
        and_(
            actions.c.started_at.is_(None),
            actions.c.status.in_(in_flight),
            actions.c.created_at >= since,
        ),
    )
    where = counted if same is None else and_(same, counted)
    return int((await connection.execute(select(func.count()).where(where))).scalar_one())
