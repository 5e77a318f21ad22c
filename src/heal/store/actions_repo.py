"""Action instance rows: load, optimistic update, claim due wakes."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import Update, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import TERMINAL_STATUSES
from heal.store.batch import insert_returning_ids
from heal.store.tables import actions

_TERMINAL = [s.value for s in TERMINAL_STATUSES]
SNAPSHOT_COLUMNS = ("config", "context")
_MUTABLE = [column for column in actions.c if column.name not in SNAPSHOT_COLUMNS]


async def load(
    connection: AsyncConnection,
    action_id: int,
    for_update: bool = False,
    *,
    snapshots: bool = True,
) -> dict[str, Any] | None:
    """The action's row; without ``config``/``context`` when ``snapshots`` is false."""
    query = select(*actions.c if snapshots else _MUTABLE).where(actions.c.id == action_id)
    if for_update and connection.dialect.name == "postgresql":
        query = query.with_for_update()
    result = await connection.execute(query)
    row = result.first()
    return dict(row._mapping) if row else None


async def update_if_version(
    connection: AsyncConnection, action_id: int, expected_version: int, values: dict[str, Any]
) -> bool:
    """Apply ``values`` and bump the version, only if nobody moved the row on meanwhile."""
    params = {f"new_{name}": value for name, value in values.items()}
    result = await connection.execute(
        _versioned_update(tuple(values)),
        {"action_id": action_id, "expected": expected_version, **params},
    )
    return result.rowcount == 1


@functools.cache
def _versioned_update(columns: tuple[str, ...]) -> Update:
    """One statement per set of columns, built once: building and keying a new UPDATE
    per wake was a tenth of the engine's CPU. (Bind names must differ from columns.)"""
    return (
        update(actions)
        .where(
            actions.c.id == bindparam("action_id"),
            actions.c.version == bindparam("expected"),
        )
        .values(
            version=actions.c.version + 1,
            **{name: bindparam(f"new_{name}", type_=actions.c[name].type) for name in columns},
        )
    )


async def mark_running(
    connection: AsyncConnection, action_id: int, expected_version: int, key: str
) -> bool:
    """Mark the run ``key`` as begun, if the action is still at ``expected_version`` and
    no run of that key was marked before (the version is not bumped: the step's outcome,
    committed with the version check, clears the mark)."""
    result = await connection.execute(
        update(actions)
        .where(
            actions.c.id == action_id,
            actions.c.version == expected_version,
            or_(actions.c.running_key.is_(None), actions.c.running_key != key),
        )
        .values(running_key=key)
    )
    return result.rowcount == 1


async def claim_due(
    connection: AsyncConnection, now: datetime, lease_until: datetime, limit: int
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due wakes; the leased rows without their snapshots.

    The ``config`` and ``context`` snapshots never change after creation, and decoding
    their JSON on every claim was a tenth of a wake's CPU: the engine keeps them per
    action and reads the whole row only when it has not seen the action yet.

    A lease, not a lock: if this process dies, the lease runs out and the wake is due
    again, so a crash never strands an action.
    """
    due = (
        select(actions.c.id)
        .where(
            actions.c.next_wake_at <= now,
            or_(actions.c.claimed_until.is_(None), actions.c.claimed_until < now),
        )
        .order_by(actions.c.next_wake_at)
        .limit(limit)
    )
    if connection.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    result = await connection.execute(
        update(actions)
        .where(actions.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=lease_until)
        .returning(*_MUTABLE)
    )
    return [dict(row._mapping) for row in result]


async def release(connection: AsyncConnection, action_id: int) -> None:
    await connection.execute(
        update(actions).where(actions.c.id == action_id).values(claimed_until=None)
    )


async def release_all_claims(connection: AsyncConnection) -> int:
    result = await connection.execute(
        update(actions).where(actions.c.claimed_until.is_not(None)).values(claimed_until=None)
    )
    return result.rowcount


async def rewake_lost(connection: AsyncConnection, now: datetime) -> list[tuple[int, int]]:
    """In-flight actions with no wake at all: give them one now (the sweeper)."""
    result = await connection.execute(
        update(actions)
        .where(
            actions.c.status.not_in(_TERMINAL),
            actions.c.next_wake_at.is_(None),
        )
        .values(next_wake_at=now)
        .returning(actions.c.id, actions.c.version)
    )
    return [(row.id, row.version) for row in result]


async def next_due_at(connection: AsyncConnection) -> datetime | None:
    result = await connection.execute(
        select(actions.c.next_wake_at)
        .where(actions.c.next_wake_at.is_not(None), actions.c.claimed_until.is_(None))
        .order_by(actions.c.next_wake_at)
        .limit(1)
    )
    return result.scalar()


async def in_flight(connection: AsyncConnection, keys: list[str]) -> dict[str, int]:
    if not keys:
        return {}
    result = await connection.execute(
        select(actions.c.inflight_key, actions.c.id).where(actions.c.inflight_key.in_(keys))
    )
    return {row.inflight_key: row.id for row in result}


async def insert_many(connection: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    return await insert_returning_ids(
        connection, actions, rows, ("incident_id", "rule", "action_name")
    )


async def wakes_due(connection: AsyncConnection) -> list[tuple[int, int, datetime]]:
    """Every in-flight action's (id, version, next wake)."""
    result = await connection.execute(
        select(actions.c.id, actions.c.version, actions.c.next_wake_at)
        .where(actions.c.next_wake_at.is_not(None))
        .order_by(actions.c.id)
    )
    return [(row.id, row.version, row.next_wake_at) for row in result]
