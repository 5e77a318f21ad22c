"""Per-target concurrency: a ``target_leases`` row per slot of a target an action holds.

The primary key (target, slot) is what keeps two actions off one target, on every worker:
an insert into a held slot does nothing. A lease is given back in the commit that ends its
action (``hook.GovernorHook``); one whose action ended without that (a crash between two
commits, a row ended by hand) is taken over by the next action that finds it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import TERMINAL_STATUSES
from heal.store.tables import actions, target_leases


def lease_key(action_name: str, target: str | None) -> str:
    """The leased name: the rendered target_key, or the action itself when it has none."""
    return target if target is not None else f"action:{action_name}"


async def acquire(
    connection: AsyncConnection, action_id: int, key: str, slots: int, now: datetime
) -> int | None:
    """Take a free slot of ``key`` for the action. None: taken (or already held by this
    action, a wake run again); else the id of an action that holds the target."""
    holders = await _live_holders(connection, key)
    if action_id in holders.values():
        return None
    for slot in range(slots):
        if slot in holders:
            continue
        if await _insert(connection, key, slot, action_id, now):
            return None
    # Every slot is held, or was taken meanwhile by a concurrent transaction.
    holders = await _live_holders(connection, key)
    return next(iter(holders.values()), None) or -1


async def release(connection: AsyncConnection, action_id: int) -> list[str]:
    """Give back the action's leases; returns the targets freed."""
    result = await connection.execute(
        delete(target_leases)
        .where(target_leases.c.action_id == action_id)
        .returning(target_leases.c.target)
    )
    return [row[0] for row in result]


async def sweep_ended(connection: AsyncConnection) -> int:
    """Delete the leases whose action has ended (the sweeper): normally none, since the
    commit that ends an action gives its leases back."""
    terminal = [status.value for status in TERMINAL_STATUSES]
    ended = select(actions.c.id).where(actions.c.status.in_(terminal))
    result = await connection.execute(
        delete(target_leases)
        .where(target_leases.c.action_id.in_(ended))
        .returning(target_leases.c.target)
    )
    return len(result.all())


async def held(connection: AsyncConnection) -> list[dict[str, object]]:
    """Every lease, with its holder (for the operator and the tests)."""
    result = await connection.execute(select(target_leases).order_by(target_leases.c.target))
    return [dict(row._mapping) for row in result]


async def _live_holders(connection: AsyncConnection, key: str) -> dict[int, int]:
    """slot -> action id of the leases of ``key`` whose action is still in flight; the
    leases of ended actions go, in this transaction."""
    rows = (
        await connection.execute(
            select(target_leases.c.slot, target_leases.c.action_id, actions.c.status)
            .select_from(
                target_leases.outerjoin(actions, actions.c.id == target_leases.c.action_id)
            )
            .where(target_leases.c.target == key)
        )
    ).all()
    live: dict[int, int] = {}
    ended: list[int] = []
    terminal = {status.value for status in TERMINAL_STATUSES}
    for slot, holder, status in rows:
        if status is None or status in terminal:
            ended.append(slot)
        else:
            live[slot] = holder
    if ended:
        await connection.execute(
            delete(target_leases).where(
                target_leases.c.target == key, target_leases.c.slot.in_(ended)
            )
        )
    return live


async def _insert(
    connection: AsyncConnection, key: str, slot: int, action_id: int, now: datetime
) -> bool:
    """Insert the lease unless its slot is held: the database decides, not a read before."""
    values = {"target": key, "slot": slot, "action_id": action_id, "acquired_at": now}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(target_leases)
        .values(values)
        .on_conflict_do_nothing()
        .returning(target_leases.c.slot)
    )
    # A row returned, not the rowcount: drivers differ in what an insert that did nothing
    # reports as its count.
    return (await connection.execute(statement)).first() is not None
