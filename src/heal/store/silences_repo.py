"""Silences: label matchers with a time range; matching alerts start no actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.store.tables import silences


async def add(connection: AsyncConnection, row: dict[str, Any]) -> int:
    result = await connection.execute(insert(silences).returning(silences.c.id), [row])
    return int(result.scalar_one())


async def active(connection: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(silences)
        .where(silences.c.starts_at <= now, silences.c.ends_at > now)
        .order_by(silences.c.id)
    )
    return [dict(row._mapping) for row in result]


async def all_silences(
    connection: AsyncConnection, include_expired: bool, now: datetime
) -> list[dict[str, Any]]:
    query = select(silences)
    if not include_expired:
        query = query.where(silences.c.ends_at > now)
    result = await connection.execute(query.order_by(silences.c.id.desc()))
    return [dict(row._mapping) for row in result]


async def expire(connection: AsyncConnection, silence_id: int, now: datetime) -> bool:
    result = await connection.execute(
        update(silences)
        .where(silences.c.id == silence_id, silences.c.ends_at > now)
        .values(ends_at=now)
    )
    return result.rowcount == 1
