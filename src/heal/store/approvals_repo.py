"""Approval requests and their signatures. Final approvals are archived, not deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.approvals import ApprovalStatus
from heal.store.tables import approval_signatures, approvals


async def insert_one(connection: AsyncConnection, row: dict[str, Any]) -> int:
    result = await connection.execute(insert(approvals).returning(approvals.c.id), [row])
    return int(result.scalar_one())


async def get(
    connection: AsyncConnection, approval_id: int, for_update: bool = False
) -> dict[str, Any] | None:
    query = select(approvals).where(approvals.c.id == approval_id)
    if for_update and connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await connection.execute(query)).first()
    return dict(row._mapping) if row else None


async def for_action(connection: AsyncConnection, action_id: int) -> dict[str, Any] | None:
    row = (
        await connection.execute(select(approvals).where(approvals.c.action_id == action_id))
    ).first()
    return dict(row._mapping) if row else None


async def finish(
    connection: AsyncConnection,
    approval_id: int,
    status: ApprovalStatus,
    now: datetime,
    by: str | None,
    reason: str | None,
) -> bool:
    """pending -> final, once: False if it was no longer pending."""
    result = await connection.execute(
        update(approvals)
        .where(approvals.c.id == approval_id, approvals.c.status == ApprovalStatus.PENDING.value)
        .values(status=status.value, decided_at=now, decided_by=by, reason=reason, archived_at=now)
    )
    return result.rowcount == 1


async def signatures(connection: AsyncConnection, approval_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(approval_signatures)
        .where(approval_signatures.c.approval_id == approval_id)
        .order_by(approval_signatures.c.id)
    )
    return [dict(row._mapping) for row in result]


async def add_signature(connection: AsyncConnection, row: dict[str, Any]) -> None:
    await connection.execute(insert(approval_signatures), [row])


async def page(
    connection: AsyncConnection, status: str | None, limit: int, before_id: int | None = None
) -> list[dict[str, Any]]:
    query = select(approvals)
    if status:
        query = query.where(approvals.c.status == status)
    if before_id:
        query = query.where(approvals.c.id < before_id)
    result = await connection.execute(query.order_by(approvals.c.id.desc()).limit(limit))
    return [dict(row._mapping) for row in result]


async def expired_pending(
    connection: AsyncConnection, now: datetime, limit: int
) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(approvals.c.id, approvals.c.action_id)
        .where(approvals.c.status == ApprovalStatus.PENDING.value, approvals.c.expires_at <= now)
        .order_by(approvals.c.expires_at)
        .limit(limit)
    )
    return [dict(row._mapping) for row in result]
