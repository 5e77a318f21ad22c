"""Rows of decisions: one per incident and deciding rule, claimed by whoever runs it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.decisions import DecisionState
from heal.store.tables import decisions

_OPEN_STATES = (DecisionState.INIT.value, DecisionState.ANALYZING.value)


def new_row(
    incident_id: int, rule: str, alert_id: int | None, now: datetime, budget: float
) -> dict[str, Any]:
    """A decision not started yet, due by ``budget`` seconds from ``now``."""
    return {
        "incident_id": incident_id,
        "rule": rule,
        "alert_id": alert_id,
        "state": DecisionState.INIT.value,
        "version": 0,
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + timedelta(seconds=budget),
        "claimed_until": None,
        "runs": 0,
        "attempts": [],
    }


async def open_many(
    connection: AsyncConnection, rows: Sequence[dict[str, Any]]
) -> dict[tuple[int, str], tuple[int, bool]]:
    """A decision per (incident, rule), unless there is one: (incident, rule) -> (its id,
    whether this call created it). Concurrent batches meet on the unique key; the second
    waits for the first's commit and then finds its row."""
    found: dict[tuple[int, str], tuple[int, bool]] = {}
    if not rows:
        return found
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    ordered = sorted(rows, key=lambda row: (row["incident_id"], row["rule"]))
    statement = (
        insert(decisions)
        .values(ordered)
        .on_conflict_do_nothing(index_elements=[decisions.c.incident_id, decisions.c.rule])
        .returning(decisions.c.id, decisions.c.incident_id, decisions.c.rule)
    )
    for row in await connection.execute(statement):
        found[(row.incident_id, row.rule)] = (row.id, True)
    missing = [
        (r["incident_id"], r["rule"]) for r in ordered if (r["incident_id"], r["rule"]) not in found
    ]
    if missing:
        result = await connection.execute(
            select(decisions.c.id, decisions.c.incident_id, decisions.c.rule).where(
                or_(
                    *(and_(decisions.c.incident_id == i, decisions.c.rule == r) for i, r in missing)
                )
            )
        )
        for row in result:
            found[(row.incident_id, row.rule)] = (row.id, False)
    return found


async def get(connection: AsyncConnection, decision_id: int) -> dict[str, Any] | None:
    result = await connection.execute(select(decisions).where(decisions.c.id == decision_id))
    row = result.first()
    return dict(row._mapping) if row else None


async def for_incident(connection: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(decisions).where(decisions.c.incident_id == incident_id).order_by(decisions.c.id)
    )
    return [dict(row._mapping) for row in result]


async def claim(
    connection: AsyncConnection, decision_id: int, now: datetime, until: datetime
) -> dict[str, Any] | None:
    """Take the decision to run its tiers, unless it is decided or another process holds
    it: the row as claimed (version moved on), or None."""
    result = await connection.execute(
        update(decisions)
        .where(
            decisions.c.id == decision_id,
            decisions.c.state.in_(_OPEN_STATES),
            or_(decisions.c.claimed_until.is_(None), decisions.c.claimed_until < now),
        )
        .values(
            state=DecisionState.ANALYZING.value,
            claimed_until=until,
            runs=decisions.c.runs + 1,
            version=decisions.c.version + 1,
            updated_at=now,
        )
        .returning(*decisions.c)
    )
    row = result.first()
    return dict(row._mapping) if row else None


async def finish(
    connection: AsyncConnection, decision_id: int, version: int, values: dict[str, Any]
) -> bool:
    """Record the verdict, if the decision is still as this process claimed it."""
    result = await connection.execute(
        update(decisions)
        .where(decisions.c.id == decision_id, decisions.c.version == version)
        .values(**values, claimed_until=None, version=version + 1)
    )
    return result.rowcount == 1


async def set_state(
    connection: AsyncConnection, decision_id: int, state: DecisionState, now: datetime
) -> None:
    await connection.execute(
        update(decisions)
        .where(decisions.c.id == decision_id)
        .values(state=state.value, updated_at=now, version=decisions.c.version + 1)
    )


async def unclaimed(connection: AsyncConnection, now: datetime, limit: int) -> list[int]:
    """Open decisions nobody holds (never started, or their process died): the sweep's."""
    result = await connection.execute(
        select(decisions.c.id)
        .where(
            decisions.c.state.in_(_OPEN_STATES),
            or_(decisions.c.claimed_until.is_(None), decisions.c.claimed_until < now),
        )
        .order_by(decisions.c.id)
        .limit(limit)
    )
    return [row.id for row in result]


async def set_values(connection: AsyncConnection, decision_id: int, values: dict[str, Any]) -> None:
    await connection.execute(
        update(decisions).where(decisions.c.id == decision_id).values(**values)
    )
