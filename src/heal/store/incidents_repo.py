"""Incidents: open ones are found by group key, resolved ones kept for the record."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.incidents import IncidentStatus
from heal.store.tables import actions, incidents


async def open_by_keys(
    connection: AsyncConnection, keys: Iterable[str]
) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    result = await connection.execute(select(incidents).where(incidents.c.open_key.in_(wanted)))
    return {row.open_key: dict(row._mapping) for row in result}


async def open_or_join(
    connection: AsyncConnection, rows: list[dict[str, Any]]
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Open an incident per row, unless one is open for its ``open_key`` by now.

    Returns (open_key -> id of the incident opened, open_key -> the incident found open).
    Two transactions opening the same new group meet on the unique ``open_key``: ``ON
    CONFLICT DO NOTHING`` makes the second wait for the first and then skip the row, and
    the first's incident is visible to its next statement, so it joins that one. Rows go
    in sorted by key, so that two batches never wait for each other in a circle.
    """
    opened: dict[str, int] = {}
    joined: dict[str, dict[str, Any]] = {}
    pending = sorted(rows, key=lambda row: str(row["open_key"]))
    # An incident found conflicting but resolved before it could be read is opened anew.
    for _ in range(_OPEN_ATTEMPTS):
        if not pending:
            return opened, joined
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(incidents)
            .values(pending)
            .on_conflict_do_nothing(index_elements=[incidents.c.open_key])
            .returning(incidents.c.id, incidents.c.open_key)
        )
        opened.update({row.open_key: row.id for row in await connection.execute(statement)})
        taken = [row["open_key"] for row in pending if row["open_key"] not in opened]
        joined.update(await open_by_keys(connection, taken))
        pending = [row for row in pending if row["open_key"] not in opened.keys() | joined.keys()]
    if pending:
        raise RuntimeError(f"incidents {sorted(r['open_key'] for r in pending)} kept closing")
    return opened, joined


_OPEN_ATTEMPTS = 3


async def set_severity(connection: AsyncConnection, incident_id: int, severity: str) -> None:
    await connection.execute(
        update(incidents).where(incidents.c.id == incident_id).values(severity=severity)
    )


async def resolve(
    connection: AsyncConnection, incident_ids: list[int], now: datetime, resolution: str
) -> None:
    if not incident_ids:
        return
    await connection.execute(
        update(incidents)
        .where(incidents.c.id.in_(incident_ids), incidents.c.status == IncidentStatus.OPEN.value)
        .values(
            status=IncidentStatus.RESOLVED.value,
            resolved_at=now,
            open_key=None,
            resolution=resolution,
        )
    )


async def get(connection: AsyncConnection, incident_id: int) -> dict[str, Any] | None:
    result = await connection.execute(select(incidents).where(incidents.c.id == incident_id))
    row = result.first()
    return dict(row._mapping) if row else None


async def page(
    connection: AsyncConnection,
    *,
    status: str | None = None,
    severity: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first; ``before_id`` is the cursor for the next page."""
    query = select(incidents)
    if status:
        query = query.where(incidents.c.status == status)
    if severity:
        query = query.where(incidents.c.severity == severity)
    if since:
        query = query.where(incidents.c.opened_at >= since)
    if before_id:
        query = query.where(incidents.c.id < before_id)
    result = await connection.execute(query.order_by(incidents.c.id.desc()).limit(limit))
    return [dict(row._mapping) for row in result]


async def action_counts(
    connection: AsyncConnection, incident_ids: list[int]
) -> dict[int, dict[str, int]]:
    if not incident_ids:
        return {}
    result = await connection.execute(
        select(actions.c.incident_id, actions.c.status, func.count())
        .where(actions.c.incident_id.in_(incident_ids))
        .group_by(actions.c.incident_id, actions.c.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for incident_id, status, count in result:
        counts.setdefault(incident_id, {})[status] = count
    return counts


async def actions_of(connection: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(actions).where(actions.c.incident_id == incident_id).order_by(actions.c.id)
    )
    return [dict(row._mapping) for row in result]
