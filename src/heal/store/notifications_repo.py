"""The chat outbox: messages decided in a transaction, sent after it by a dispatcher."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.store.tables import chat_cards, notifications


async def enqueue(
    connection: AsyncConnection,
    *,
    incident_id: int,
    kind: str,
    text: str,
    now: datetime,
    approval_id: int | None = None,
    action_id: int | None = None,
) -> None:
    await connection.execute(
        insert(notifications),
        [
            {
                "incident_id": incident_id,
                "approval_id": approval_id,
                "action_id": action_id,
                "kind": kind,
                "text": text,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        ],
    )


async def due(connection: AsyncConnection, now: datetime, limit: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(notifications)
        .where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
        .order_by(notifications.c.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in result]


async def mark(
    connection: AsyncConnection,
    notification_id: int,
    status: str,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "attempts": notifications.c.attempts + 1,
    }
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    await connection.execute(
        update(notifications).where(notifications.c.id == notification_id).values(**values)
    )


async def record_card(
    connection: AsyncConnection,
    *,
    incident_id: int,
    approval_id: int | None,
    provider: str,
    chat_id: str,
    message_id: str,
    now: datetime,
) -> None:
    await connection.execute(
        insert(chat_cards),
        [
            {
                "incident_id": incident_id,
                "approval_id": approval_id,
                "provider": provider,
                "chat_id": chat_id,
                "message_id": message_id,
                "sent_at": now,
            }
        ],
    )


async def recent_card(
    connection: AsyncConnection, incident_id: int, provider: str, now: datetime, within: timedelta
) -> dict[str, Any] | None:
    row = (
        await connection.execute(
            select(chat_cards)
            .where(
                chat_cards.c.incident_id == incident_id,
                chat_cards.c.provider == provider,
                chat_cards.c.sent_at >= now - within,
            )
            .order_by(chat_cards.c.id.desc())
            .limit(1)
        )
    ).first()
    return dict(row._mapping) if row else None


async def card_of(
    connection: AsyncConnection,
    *,
    provider: str,
    approval_id: int | None = None,
    incident_id: int | None = None,
) -> dict[str, Any] | None:
    query = select(chat_cards).where(chat_cards.c.provider == provider)
    if approval_id is not None:
        query = query.where(chat_cards.c.approval_id == approval_id)
    if incident_id is not None:
        query = query.where(chat_cards.c.incident_id == incident_id)
    row = (await connection.execute(query.order_by(chat_cards.c.id.desc()).limit(1))).first()
    return dict(row._mapping) if row else None
