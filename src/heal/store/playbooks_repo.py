"""Rows of playbooks and of what the learning sweep took from each incident.

Stats change by read, compute, compare-and-set on ``version`` (tried again when another
transaction got there first), so the stored lower bound always matches the counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.playbooks import mean_update, playbook_lower_bound
from heal.store.tables import learned, playbooks

Row = dict[str, Any]
_ATTEMPTS = 5


class PlaybookConflict(Exception):
    """Another playbook already has this signature, action and params."""


async def insert_playbook(connection: AsyncConnection, row: Row) -> int:
    values = {
        "runs": 0,
        "verified_successes": 0,
        "rejections": 0,
        "mttr_seconds": None,
        "mttr_samples": 0,
        "learned_from": None,
        "last_used_at": None,
        "version": 0,
        **row,
    }
    values["lower_bound"] = playbook_lower_bound(
        values["verified_successes"], values["runs"], values["rejections"]
    )
    if await find_merge(
        connection, values["signature_key"], values["action_name"], values["params_key"]
    ):
        raise PlaybookConflict(values["name"])
    result = await connection.execute(insert(playbooks).returning(playbooks.c.id), [values])
    return int(result.scalar_one())


async def get(connection: AsyncConnection, playbook_id: int) -> Row | None:
    result = await connection.execute(select(playbooks).where(playbooks.c.id == playbook_id))
    row = result.first()
    return dict(row._mapping) if row else None


async def find_merge(
    connection: AsyncConnection, signature_key: str, action_name: str, params_key: str
) -> Row | None:
    """The playbook a new fix of this kind merges into."""
    result = await connection.execute(
        select(playbooks).where(
            playbooks.c.signature_key == signature_key,
            playbooks.c.action_name == action_name,
            playbooks.c.params_key == params_key,
        )
    )
    row = result.first()
    return dict(row._mapping) if row else None


async def page(
    connection: AsyncConnection,
    *,
    status: str | None = None,
    action_name: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Row]:
    query = select(playbooks).where(playbooks.c.id > after_id)
    if status:
        query = query.where(playbooks.c.status == status)
    if action_name:
        query = query.where(playbooks.c.action_name == action_name)
    result = await connection.execute(query.order_by(playbooks.c.id).limit(limit))
    return [dict(row._mapping) for row in result]


async def of_name(connection: AsyncConnection, status: str, alertname: str) -> list[Row]:
    """What the tier compares of every playbook of this status and alert name, best lower
    bound first (then id)."""
    result = await connection.execute(
        select(
            playbooks.c.id,
            playbooks.c.version,
            playbooks.c.lower_bound,
            playbooks.c.last_used_at,
            playbooks.c.action_name,
            playbooks.c.signature_key,
            playbooks.c.signature,
            playbooks.c.annotation_text,
        )
        .where(playbooks.c.status == status, playbooks.c.alertname == alertname)
        .order_by(playbooks.c.lower_bound.desc(), playbooks.c.id)
    )
    return [dict(row._mapping) for row in result]


async def name_stamp(
    connection: AsyncConnection, status: str, alertname: str
) -> tuple[int, int, int, datetime | None]:
    """What changes when any playbook of this status and alert name changes, is added or
    goes (count, newest id, sum of versions, newest update): a cache of ``of_name`` is
    stale when it differs."""
    result = await connection.execute(
        select(
            func.count(),
            func.coalesce(func.max(playbooks.c.id), 0),
            func.coalesce(func.sum(playbooks.c.version), 0),
            func.max(playbooks.c.updated_at),
        ).where(playbooks.c.status == status, playbooks.c.alertname == alertname)
    )
    count, newest, versions, updated = result.one()
    return int(count), int(newest), int(versions), updated


async def adjust(
    connection: AsyncConnection,
    playbook_id: int,
    now: datetime,
    *,
    runs: int = 0,
    successes: int = 0,
    rejections: int = 0,
    resolve_seconds: float | None = None,
    used_at: datetime | None = None,
) -> Row | None:
    """Add to a playbook's counts (negative deltas undo an earlier count), one MTTR sample
    and its last use; the lower bound recomputed. The row after it, None if it is gone."""
    for _ in range(_ATTEMPTS):
        row = await get(connection, playbook_id)
        if row is None:
            return None
        values = _adjusted(row, runs, successes, rejections, resolve_seconds, used_at)
        values |= {"updated_at": now, "version": row["version"] + 1}
        result = await connection.execute(
            update(playbooks)
            .where(playbooks.c.id == playbook_id, playbooks.c.version == row["version"])
            .values(**values)
        )
        if result.rowcount == 1:
            return row | values
    raise RuntimeError(f"playbook {playbook_id} kept changing under its update")


def _adjusted(
    row: Row,
    runs: int,
    successes: int,
    rejections: int,
    resolve_seconds: float | None,
    used_at: datetime | None,
) -> Row:
    new_runs = max(row["runs"] + runs, 0)
    new_successes = min(max(row["verified_successes"] + successes, 0), new_runs)
    new_rejections = max(row["rejections"] + rejections, 0)
    values: Row = {
        "runs": new_runs,
        "verified_successes": new_successes,
        "rejections": new_rejections,
        "lower_bound": playbook_lower_bound(new_successes, new_runs, new_rejections),
    }
    if resolve_seconds is not None:
        samples = row["mttr_samples"] + 1
        values["mttr_samples"] = samples
        values["mttr_seconds"] = mean_update(row["mttr_seconds"], samples, resolve_seconds)
    if used_at is not None and (row["last_used_at"] is None or used_at > row["last_used_at"]):
        values["last_used_at"] = used_at
    return values


async def set_values(connection: AsyncConnection, playbook_id: int, values: Row) -> Row | None:
    """Set plain fields (status, name, params, ...); the row after it, None if gone."""
    row = await get(connection, playbook_id)
    if row is None:
        return None
    merged = row | values
    if {"signature_key", "action_name", "params_key"} & values.keys():
        other = await find_merge(
            connection, merged["signature_key"], merged["action_name"], merged["params_key"]
        )
        if other is not None and other["id"] != playbook_id:
            raise PlaybookConflict(f"playbook {other['id']} ({other['name']})")
    merged["lower_bound"] = playbook_lower_bound(
        merged["verified_successes"], merged["runs"], merged["rejections"]
    )
    merged["version"] = row["version"] + 1
    changed = {k: v for k, v in merged.items() if k != "id"}
    await connection.execute(
        update(playbooks).where(playbooks.c.id == playbook_id).values(**changed)
    )
    return merged


async def delete_playbook(connection: AsyncConnection, playbook_id: int) -> bool:
    """Delete a playbook; what it learned from stays learned (not counted again)."""
    await connection.execute(
        update(learned).where(learned.c.playbook_id == playbook_id).values(playbook_id=None)
    )
    result = await connection.execute(delete(playbooks).where(playbooks.c.id == playbook_id))
    return result.rowcount == 1


# -- what the learning sweep took ------------------------------------------------------------
async def learned_of(connection: AsyncConnection, incident_id: int) -> Row | None:
    result = await connection.execute(select(learned).where(learned.c.incident_id == incident_id))
    row = result.first()
    return dict(row._mapping) if row else None


async def claim_learned(connection: AsyncConnection, row: Row) -> bool:
    """Insert or move on the incident's marker, unless another transaction already saw as
    much (``seen_at``): False then, and the caller learns nothing. On PostgreSQL the
    second of two concurrent sweeps waits on the row, then finds its condition false."""
    incident_id = row["incident_id"]
    moved = await connection.execute(
        update(learned)
        .where(learned.c.incident_id == incident_id, learned.c.seen_at < row["seen_at"])
        .values(**row)
    )
    if moved.rowcount == 1:
        return True
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    inserted = await connection.execute(
        dialect_insert(learned)
        .values(**row)
        .on_conflict_do_nothing(index_elements=[learned.c.incident_id])
        .returning(learned.c.incident_id)
    )
    return inserted.first() is not None


async def set_learned_playbook(
    connection: AsyncConnection, incident_id: int, playbook_id: int | None, success: bool
) -> None:
    await connection.execute(
        update(learned)
        .where(learned.c.incident_id == incident_id)
        .values(playbook_id=playbook_id, playbook_success=success)
    )
