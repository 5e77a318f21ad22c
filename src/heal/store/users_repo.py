"""Users, their API tokens (hashed) and their chat identities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.store.tables import api_tokens, chat_identities, users


async def add(
    connection: AsyncConnection, name: str, role: str, groups: list[str], now: datetime
) -> int:
    result = await connection.execute(
        insert(users).returning(users.c.id),
        [{"name": name, "role": role, "groups": groups, "created_at": now, "disabled": False}],
    )
    return int(result.scalar_one())


async def by_name(connection: AsyncConnection, name: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(users).where(users.c.name == name))).first()
    return dict(row._mapping) if row else None


async def all_users(connection: AsyncConnection) -> list[dict[str, Any]]:
    result = await connection.execute(select(users).order_by(users.c.name))
    return [dict(row._mapping) for row in result]


async def add_token(
    connection: AsyncConnection, user_id: int, token_hash: str, label: str, now: datetime
) -> None:
    await connection.execute(
        insert(api_tokens),
        [{"user_id": user_id, "token_hash": token_hash, "label": label, "created_at": now}],
    )


async def by_token_hash(connection: AsyncConnection, token_hash: str) -> dict[str, Any] | None:
    row = (
        await connection.execute(
            select(users)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(
                api_tokens.c.token_hash == token_hash,
                api_tokens.c.revoked_at.is_(None),
                users.c.disabled.is_(False),
            )
        )
    ).first()
    return dict(row._mapping) if row else None


async def link_chat(
    connection: AsyncConnection, user_id: int, provider: str, external_id: str
) -> None:
    existing = (
        await connection.execute(
            select(chat_identities.c.id).where(
                chat_identities.c.provider == provider, chat_identities.c.external_id == external_id
            )
        )
    ).first()
    if existing:
        await connection.execute(
            update(chat_identities)
            .where(chat_identities.c.id == existing.id)
            .values(user_id=user_id)
        )
    else:
        await connection.execute(
            insert(chat_identities),
            [{"user_id": user_id, "provider": provider, "external_id": external_id}],
        )


async def by_chat_identity(
    connection: AsyncConnection, provider: str, external_id: str
) -> dict[str, Any] | None:
    row = (
        await connection.execute(
            select(users)
            .join(chat_identities, chat_identities.c.user_id == users.c.id)
            .where(
                chat_identities.c.provider == provider,
                chat_identities.c.external_id == external_id,
                users.c.disabled.is_(False),
            )
        )
    ).first()
    return dict(row._mapping) if row else None


async def chat_identities_of(connection: AsyncConnection, user_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(chat_identities).where(chat_identities.c.user_id == user_id)
    )
    return [dict(row._mapping) for row in result]
