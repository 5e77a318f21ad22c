"""Rows of verification: the watches, what they look at, and people's ratings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.incidents import IncidentStatus
from heal.domain.verification import Outcome
from heal.store.tables import alerts, incidents, ratings, verifications


async def insert_pending(connection: AsyncConnection, row: dict[str, Any]) -> None:
    await connection.execute(insert(verifications), [row])


async def pending_after(connection: AsyncConnection, after_id: int, limit: int) -> list[int]:
    """Ids of pending verifications past ``after_id``, oldest first (the sweep's cursor)."""
    result = await connection.execute(
        select(verifications.c.id)
        .where(verifications.c.outcome == Outcome.PENDING.value, verifications.c.id > after_id)
        .order_by(verifications.c.id)
        .limit(limit)
    )
    return [row.id for row in result]


async def pending_near(connection: AsyncConnection, incident_ids: Sequence[int]) -> list[int]:
    """Ids of the pending verifications a new alert in these incidents may have relapsed:
    those of resolved incidents of the same group key, or holding one of their alerts."""
    keys = select(incidents.c.group_key).where(incidents.c.id.in_(incident_ids))
    fingerprints = select(alerts.c.fingerprint).where(alerts.c.incident_id.in_(incident_ids))
    holding = select(alerts.c.incident_id).where(alerts.c.fingerprint.in_(fingerprints))
    result = await connection.execute(
        select(verifications.c.id)
        .select_from(verifications.join(incidents, incidents.c.id == verifications.c.incident_id))
        .where(
            verifications.c.outcome == Outcome.PENDING.value,
            incidents.c.status == IncidentStatus.RESOLVED.value,
            or_(incidents.c.group_key.in_(keys), incidents.c.id.in_(holding)),
        )
        .order_by(verifications.c.id)
    )
    return [row.id for row in result]


async def get(connection: AsyncConnection, verification_id: int) -> dict[str, Any] | None:
    result = await connection.execute(
        select(verifications).where(verifications.c.id == verification_id)
    )
    row = result.first()
    return dict(row._mapping) if row else None


async def for_action(connection: AsyncConnection, action_id: int) -> dict[str, Any] | None:
    result = await connection.execute(
        select(verifications).where(verifications.c.action_id == action_id)
    )
    row = result.first()
    return dict(row._mapping) if row else None


async def for_incident(connection: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(verifications)
        .where(verifications.c.incident_id == incident_id)
        .order_by(verifications.c.started_at, verifications.c.id)
    )
    return [dict(row._mapping) for row in result]


async def set_values(
    connection: AsyncConnection, verification_id: int, values: dict[str, Any]
) -> bool:
    """Apply ``values`` while the verification is still pending (one verdict only)."""
    result = await connection.execute(
        update(verifications)
        .where(
            verifications.c.id == verification_id,
            verifications.c.outcome == Outcome.PENDING.value,
        )
        .values(**values)
    )
    return result.rowcount == 1


async def incident_alerts(connection: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(alerts).where(alerts.c.incident_id == incident_id).order_by(alerts.c.id)
    )
    return [dict(row._mapping) for row in result]


async def alerts_received_between(
    connection: AsyncConnection,
    fingerprints: Iterable[str],
    after: datetime,
    until: datetime,
    exclude_incident: int,
) -> list[dict[str, Any]]:
    """New occurrences of these alerts received in ``(after, until]`` elsewhere."""
    wanted = sorted(set(fingerprints))
    if not wanted:
        return []
    result = await connection.execute(
        select(alerts)
        .where(
            alerts.c.fingerprint.in_(wanted),
            alerts.c.received_at > after,
            alerts.c.received_at <= until,
            alerts.c.incident_id.is_distinct_from(exclude_incident),
        )
        .order_by(alerts.c.id)
    )
    return [dict(row._mapping) for row in result]


async def incidents_opened_between(
    connection: AsyncConnection, key: str, after: datetime, until: datetime, exclude: int
) -> list[dict[str, Any]]:
    """Incidents of the same group key opened in ``(after, until]``, other than ``exclude``."""
    result = await connection.execute(
        select(incidents)
        .where(
            incidents.c.group_key == key,
            incidents.c.opened_at > after,
            incidents.c.opened_at <= until,
            incidents.c.id != exclude,
        )
        .order_by(incidents.c.id)
    )
    return [dict(row._mapping) for row in result]


async def open_incident_of_key(connection: AsyncConnection, key: str) -> dict[str, Any] | None:
    result = await connection.execute(select(incidents).where(incidents.c.open_key == key))
    row = result.first()
    return dict(row._mapping) if row else None


# -- ratings ---------------------------------------------------------------------------------
async def rate(
    connection: AsyncConnection,
    incident_id: int,
    rated_by: str,
    score: int,
    comment: str | None,
    now: datetime,
) -> None:
    """One rating per person and incident: a second one replaces the first."""
    values = {
        "incident_id": incident_id,
        "rated_by": rated_by,
        "score": score,
        "comment": comment,
        "at": now,
    }
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(ratings).values(**values)
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=[ratings.c.incident_id, ratings.c.rated_by],
            set_={"score": score, "comment": comment, "at": now},
        )
    )


async def ratings_of(connection: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    """Newest first."""
    result = await connection.execute(
        select(ratings)
        .where(ratings.c.incident_id == incident_id)
        .order_by(ratings.c.at.desc(), ratings.c.id.desc())
    )
    return [dict(row._mapping) for row in result]
