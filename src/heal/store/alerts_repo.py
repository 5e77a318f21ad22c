"""Alert occurrences, keyed by (fingerprint, starts_at)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.alerts import AlertStatus
from heal.store.batch import insert_returning_ids
from heal.store.tables import alerts


class KnownAlert(NamedTuple):
    id: int
    status: AlertStatus
    incident_id: int | None


async def find(
    connection: AsyncConnection, fingerprints: Iterable[str]
) -> dict[tuple[str, datetime], KnownAlert]:
    wanted = sorted(set(fingerprints))
    if not wanted:
        return {}
    result = await connection.execute(
        select(
            alerts.c.id,
            alerts.c.fingerprint,
            alerts.c.starts_at,
            alerts.c.status,
            alerts.c.incident_id,
        ).where(alerts.c.fingerprint.in_(wanted))
    )
    return {
        (row.fingerprint, row.starts_at): KnownAlert(
            row.id, AlertStatus(row.status), row.incident_id
        )
        for row in result
    }


async def insert_many(connection: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    return await insert_returning_ids(connection, alerts, rows, ("fingerprint", "starts_at"))


async def resolve_many(
    connection: AsyncConnection, resolved: list[tuple[int, datetime | None]], now: datetime
) -> None:
    for alert_id, ends_at in resolved:
        await connection.execute(
            update(alerts)
            .where(alerts.c.id == alert_id)
            .values(status=AlertStatus.RESOLVED.value, ends_at=ends_at or now, updated_at=now)
        )


async def firing_counts(connection: AsyncConnection, incident_ids: Iterable[int]) -> dict[int, int]:
    ids = sorted(set(incident_ids))
    if not ids:
        return {}
    result = await connection.execute(
        select(alerts.c.incident_id, func.count())
        .where(alerts.c.incident_id.in_(ids), alerts.c.status == AlertStatus.FIRING.value)
        .group_by(alerts.c.incident_id)
    )
    counts = {incident_id: 0 for incident_id in ids}
    counts.update({row[0]: row[1] for row in result})
    return counts


async def for_incident(connection: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(alerts).where(alerts.c.incident_id == incident_id).order_by(alerts.c.id)
    )
    return [dict(row._mapping) for row in result]
