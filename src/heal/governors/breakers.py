"""Circuit breakers per action and target, from the rows.

A breaker opens when ``failures`` failures (or ineffective outcomes of verification) of
one action on one target happened within ``within`` seconds, counted since the breaker last
closed; it stays open for ``cooldown`` seconds after the failure that opened it, or until
an operator resets it. A reset or the cooldown's end closes it: only failures after that
count towards opening it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import ActionStatus, FailureType
from heal.policy.models import Breaker
from heal.store.tables import actions, breakers, verifications

# Failures that say nothing about the action on its target: a person cancelled it, it was
# never created properly, a governor refused it.
_NOT_COUNTED = (
    FailureType.USER_ABORT.value,
    FailureType.CREATE_FAILURE.value,
    FailureType.BLOCKED.value,
)


@dataclass(frozen=True, slots=True)
class OpenBreaker:
    id: int
    failures: int
    opened_at: datetime
    closes_at: datetime

    def describe(self, action_name: str, target: str) -> str:
        where = f" on {target}" if target else ""
        return (
            f"circuit breaker #{self.id} of {action_name!r}{where} is open: {self.failures} "
            f"failure(s) since {self.opened_at:%Y-%m-%d %H:%M:%S} UTC; it closes at "
            f"{self.closes_at:%Y-%m-%d %H:%M:%S} UTC or when reset (heal breakers reset "
            f"{self.id})"
        )


async def evaluate(
    connection: AsyncConnection,
    action_name: str,
    target: str | None,
    config: Breaker,
    now: datetime,
) -> OpenBreaker | None:
    """The breaker of the action on the target if it is open now, opening it when the
    failures in the rows say it must."""
    stored = (
        await connection.execute(
            select(breakers).where(
                breakers.c.action_name == action_name, breakers.c.target == (target or "")
            )
        )
    ).first()
    if stored is not None and stored.closes_at > now:
        return OpenBreaker(stored.id, stored.failures, stored.opened_at, stored.closes_at)
    since = now - timedelta(seconds=config.within)
    if stored is not None and stored.closes_at > since:
        since = stored.closes_at
    times = await _failure_times(connection, action_name, target, since)
    if len(times) < config.failures:
        return None
    closes_at = max(times) + timedelta(seconds=config.cooldown)
    if closes_at <= now:
        return None  # it would have opened, and its cooldown has passed already
    breaker_id = await _open(connection, action_name, target or "", len(times), now, closes_at)
    return OpenBreaker(breaker_id, len(times), now, closes_at)


async def _failure_times(
    connection: AsyncConnection, action_name: str, target: str | None, since: datetime
) -> list[datetime]:
    same = and_(
        actions.c.action_name == action_name,
        actions.c.target.is_(None) if target is None else actions.c.target == target,
    )
    failed = select(actions.c.finished_at).where(
        same,
        actions.c.status == ActionStatus.FAILURE.value,
        actions.c.failure_type.not_in(_NOT_COUNTED),
        actions.c.finished_at > since,
    )
    ineffective = (
        select(verifications.c.outcome_at)
        .select_from(verifications.join(actions, actions.c.id == verifications.c.action_id))
        .where(
            same,
            verifications.c.outcome == "ineffective",
            verifications.c.outcome_at > since,
        )
    )
    rows = (await connection.execute(failed.union_all(ineffective))).all()
    return [row[0] for row in rows if row[0] is not None]


async def _open(
    connection: AsyncConnection,
    action_name: str,
    target: str,
    failures: int,
    now: datetime,
    closes_at: datetime,
) -> int:
    values = {
        "action_name": action_name,
        "target": target,
        "failures": failures,
        "opened_at": now,
        "closes_at": closes_at,
        "reset_by": None,
        "reset_at": None,
    }
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(breakers).values(values)
    statement = insert.on_conflict_do_update(
        index_elements=[breakers.c.action_name, breakers.c.target],
        set_={k: insert.excluded[k] for k in values if k not in ("action_name", "target")},
    ).returning(breakers.c.id)
    return int((await connection.execute(statement)).scalar_one())


async def listing(connection: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
    """Every breaker that ever opened, the open ones first, with its state now."""
    rows = (
        await connection.execute(
            select(breakers).order_by(breakers.c.closes_at.desc(), breakers.c.id)
        )
    ).all()
    return [{**row._mapping, "open": row.closes_at > now} for row in rows]


async def reset(connection: AsyncConnection, breaker_id: int, who: str, now: datetime) -> bool:
    """Close the breaker now; failures before now no longer count. False: no such breaker."""
    result = await connection.execute(
        update(breakers)
        .where(breakers.c.id == breaker_id)
        .values(closes_at=now, reset_by=who, reset_at=now)
    )
    return bool(result.rowcount)
