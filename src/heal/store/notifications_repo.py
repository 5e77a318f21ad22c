"""The chat outbox: messages decided in a transaction, sent after it by a dispatcher."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.store.locks import serialise
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
    channel: str | None = None,
    event: str | None = None,
    payload: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> int:
    """Queue one message; its id. With ``dedupe_key``, a message queued under that key
    before (by any worker) is not queued again: its id is returned instead."""
    row = {
        "incident_id": incident_id,
        "approval_id": approval_id,
        "action_id": action_id,
        "kind": kind,
        "text": text,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "channel": channel,
        "event": event,
        "payload": payload,
        "dedupe_key": dedupe_key,
    }
    if dedupe_key is None:
        result = await connection.execute(
            insert(notifications).values(row).returning(notifications.c.id)
        )
        return int(result.scalar_one())
    # ON CONFLICT DO NOTHING: a concurrent transaction queuing the same key makes this one
    # wait for it and then skip, instead of failing on the unique index.
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    inserted = (
        await connection.execute(
            dialect_insert(notifications)
            .values(row)
            .on_conflict_do_nothing(index_elements=[notifications.c.dedupe_key])
            .returning(notifications.c.id)
        )
    ).scalar()
    if inserted is not None:
        return int(inserted)
    found = await queued_under(connection, dedupe_key)
    assert found is not None  # the conflict was on this very key
    return found


async def queued_under(connection: AsyncConnection, dedupe_key: str) -> int | None:
    """The id of the message queued under ``dedupe_key``, if any."""
    found = (
        await connection.execute(
            select(notifications.c.id).where(notifications.c.dedupe_key == dedupe_key)
        )
    ).scalar()
    return int(found) if found is not None else None


async def listing(
    connection: AsyncConnection,
    *,
    status: str | None = None,
    incident_id: int | None = None,
    channel: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The newest delivery records first: one per routed event and channel, and the chat
    outbox's cards and updates (their channels in ``sent_to``)."""
    query = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(notifications.c.status == status)
    if incident_id is not None:
        query = query.where(notifications.c.incident_id == incident_id)
    if channel is not None:
        query = query.where(notifications.c.channel == channel)
    return [dict(row._mapping) for row in await connection.execute(query)]


async def waiting_events(
    connection: AsyncConnection, incident_id: int, channel: str
) -> list[dict[str, Any]]:
    """Routed events for ``channel`` about the incident still to send (oldest first)."""
    rows = await connection.execute(
        select(notifications)
        .where(
            notifications.c.incident_id == incident_id,
            notifications.c.channel == channel,
            notifications.c.kind == "event",
            notifications.c.status == "pending",
        )
        .order_by(notifications.c.id)
    )
    return [dict(row._mapping) for row in rows]


async def collapse(connection: AsyncConnection, notification_ids: list[int], into: int) -> None:
    """These rows went out as part of notification ``into`` (a storm, said once)."""
    await connection.execute(
        update(notifications)
        .where(notifications.c.id.in_(notification_ids), notifications.c.status == "pending")
        .values(status="collapsed", error=f"sent within notification {into}")
    )


async def any_due(connection: AsyncConnection, now: datetime) -> bool:
    row = (
        await connection.execute(
            select(notifications.c.id)
            .where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
            .limit(1)
        )
    ).first()
    return row is not None


async def claim_due(
    connection: AsyncConnection, now: datetime, limit: int, lease: timedelta
) -> list[dict[str, Any]]:
    """Pending notifications that are due, leased until ``now + lease``.

    The lease keeps a second dispatcher (another process) off them while they are sent;
    rows locked by a concurrent claim on PostgreSQL are skipped, not waited for.
    """
    result = await connection.execute(
        select(notifications)
        .where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
        .order_by(notifications.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = [dict(row._mapping) for row in result]
    if rows:
        await connection.execute(
            update(notifications)
            .where(notifications.c.id.in_([r["id"] for r in rows]))
            .values(next_attempt_at=now + lease)
        )
        for row in rows:  # as stored: the lease a dispatcher renews (``renew_lease``)
            row["next_attempt_at"] = now + lease
    return rows


async def delivered(
    connection: AsyncConnection, notification_id: int, sent_to: list[str], *, done: bool
) -> None:
    """Record the channels reached so far; ``done`` when that is all of them."""
    values: dict[str, Any] = {"sent_to": ",".join(sent_to)}
    if done:
        values.update(status="sent", error=None)
    await connection.execute(
        update(notifications).where(notifications.c.id == notification_id).values(**values)
    )


async def finish(
    connection: AsyncConnection, notification_id: int, status: str, error: str | None
) -> None:
    await connection.execute(
        update(notifications)
        .where(notifications.c.id == notification_id)
        .values(status=status, error=error)
    )


async def retry_later(
    connection: AsyncConnection, notification_id: int, at: datetime, error: str
) -> None:
    await connection.execute(
        update(notifications)
        .where(notifications.c.id == notification_id)
        .values(attempts=notifications.c.attempts + 1, next_attempt_at=at, error=error)
    )


async def record_card(
    connection: AsyncConnection,
    *,
    incident_id: int,
    approval_id: int | None,
    provider: str,
    chat_id: str,
    message_id: str,
    thread_id: str | None,
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
                "thread_id": thread_id,
                "sent_at": now,
            }
        ],
    )


async def close_card(connection: AsyncConnection, card_id: int, now: datetime) -> None:
    await connection.execute(
        update(chat_cards).where(chat_cards.c.id == card_id).values(closed_at=now)
    )


async def recent_card(
    connection: AsyncConnection, incident_id: int, provider: str, now: datetime, within: timedelta
) -> dict[str, Any] | None:
    """The incident's newest card on ``provider`` sent within ``within`` of ``now``."""
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


async def card_by_message(
    connection: AsyncConnection, provider: str, chat_id: str, message_id: str
) -> dict[str, Any] | None:
    row = (
        await connection.execute(
            select(chat_cards).where(
                chat_cards.c.provider == provider,
                chat_cards.c.chat_id == chat_id,
                chat_cards.c.message_id == message_id,
            )
        )
    ).first()
    return dict(row._mapping) if row else None


async def renew_lease(
    connection: AsyncConnection, notification_id: int, held: datetime, until: datetime
) -> bool:
    """Extend a lease this dispatcher still holds (its ``held`` expiry is unchanged).

    False when the row was finished or leased again by another dispatcher after ours
    ran out: the caller must then leave it alone, or the message would go out twice.
    """
    result = await connection.execute(
        update(notifications)
        .where(
            notifications.c.id == notification_id,
            notifications.c.status == "pending",
            notifications.c.next_attempt_at == held,
        )
        .values(next_attempt_at=until)
    )
    return result.rowcount == 1


async def postpone(connection: AsyncConnection, notification_id: int, at: datetime) -> None:
    """Try again at ``at`` without counting an attempt (it is waiting, not failing)."""
    await connection.execute(
        update(notifications)
        .where(notifications.c.id == notification_id)
        .values(next_attempt_at=at)
    )


async def unsent_card(
    connection: AsyncConnection, approval_id: int, provider: str, before_id: int
) -> dict[str, Any] | None:
    """The approval's card notification still on its way to ``provider``, if any.

    Updates about the approval wait for it, so they land in its thread instead of
    standing alone.
    """
    rows = await connection.execute(
        select(notifications).where(
            notifications.c.approval_id == approval_id,
            notifications.c.kind == "card",
            notifications.c.status == "pending",
            notifications.c.id < before_id,
        )
    )
    for row in rows:
        if provider not in (row.sent_to or "").split(","):
            return dict(row._mapping)
    return None


async def take_channel_slot(
    connection: AsyncConnection,
    notification_id: int,
    channel: str,
    now: datetime,
    interval: float,
) -> datetime | None:
    """Take ``channel``'s slot for this row (None), unless any dispatcher took one less
    than ``interval`` seconds ago: then the time the channel frees up, and nothing taken.

    The channel's rows say when it last sent, so every process sees the same limit;
    concurrent transactions on PostgreSQL take the channel's advisory lock first (SQLite
    has one writer at a time already).
    """
    await serialise(connection, f"notifications-channel:{channel}")
    last = (
        await connection.execute(
            select(func.max(notifications.c.sending_at)).where(notifications.c.channel == channel)
        )
    ).scalar()
    if last is not None and interval > 0:
        free_at: datetime = last + timedelta(seconds=interval)
        if free_at > now:
            return free_at
    await connection.execute(
        update(notifications).where(notifications.c.id == notification_id).values(sending_at=now)
    )
    return None
