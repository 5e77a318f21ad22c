"""The timeline is append-only: this module inserts and reads, never updates or deletes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.store.tables import timeline


async def append(
    connection: AsyncConnection,
    incident_id: int | None,
    entries: Sequence[TimelineEntry],
    at: datetime,
    redact: Redactor,
) -> None:
    if not entries:
        return
    await connection.execute(
        insert(timeline),
        [
            {
                "incident_id": incident_id,
                "action_id": entry.action_id,
                "at": at,
                "kind": entry.kind.value,
                "message": redact.text(entry.message),
                "data": redact(entry.data),
            }
            for entry in entries
        ],
    )


async def append_rows(
    connection: AsyncConnection, rows: list[dict[str, Any]], redact: Redactor
) -> None:
    """Entries for many incidents at once (ingest batches)."""
    if not rows:
        return
    for row in rows:
        row["message"] = redact.text(row["message"])
        row["data"] = redact(row["data"])
    await connection.execute(insert(timeline), rows)


class PendingRows:
    """Timeline rows gathered during one transaction, all at ``now``, and written together
    at its end with :func:`append_rows` (ingest's batch, a fallback, a decision's verdict).
    ``note`` has the signature ingest's helpers take as ``note``."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.rows: list[dict[str, Any]] = []

    def note(
        self,
        incident_id: int | None,
        kind: EventKind,
        message: str,
        action_id: int | None = None,
        **data: Any,
    ) -> None:
        self.rows.append(
            {
                "incident_id": incident_id,
                "action_id": action_id,
                "at": self.now,
                "kind": kind.value,
                "message": message,
                "data": data,
            }
        )


async def for_incident(
    connection: AsyncConnection, incident_id: int, limit: int = 1000
) -> list[dict[str, Any]]:
    return await _events(connection, timeline.c.incident_id == incident_id, limit)


async def for_action(
    connection: AsyncConnection, action_id: int, limit: int = 1000
) -> list[dict[str, Any]]:
    return await _events(connection, timeline.c.action_id == action_id, limit)


async def _events(connection: AsyncConnection, where: Any, limit: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(timeline).where(where).order_by(timeline.c.id).limit(limit)
    )
    return [dict(row._mapping) for row in result]
