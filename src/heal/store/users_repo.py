"""Users, their API tokens (hashed) and their chat identities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
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
    connection: AsyncConnection,
    user_id: int,
    token_hash: str,
    label: str,
    now: datetime,
    *,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> int:
    result = await connection.execute(
        insert(api_tokens).returning(api_tokens.c.id),
        [
            {
                "user_id": user_id,
                "token_hash": token_hash,
                "label": label,
                "created_at": now,
                "scopes": scopes,
                "expires_at": expires_at,
            }
        ],
    )
    return int(result.scalar_one())


async def token_of(connection: AsyncConnection, token_hash: str) -> dict[str, Any] | None:
    """The token with this hash and its user, whatever their state: the caller says why
    a revoked token, an expired one or a disabled user is refused."""
    row = (
        await connection.execute(
            select(
                users,
                api_tokens.c.id.label("token_id"),
                api_tokens.c.scopes,
                api_tokens.c.revoked_at,
                api_tokens.c.expires_at,
            )
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == token_hash)
        )
    ).first()
    return dict(row._mapping) if row else None


async def tokens_of(connection: AsyncConnection, user_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(api_tokens).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id)
    )
    return [dict(row._mapping) for row in result]


async def revoke_tokens(
    connection: AsyncConnection, user_id: int, now: datetime, token_id: int | None = None
) -> int:
    """Revoke one token of the user (or all of them); how many were still live."""
    query = update(api_tokens).where(
        api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None)
    )
    if token_id is not None:
        query = query.where(api_tokens.c.id == token_id)
    return (await connection.execute(query.values(revoked_at=now))).rowcount


async def set_disabled(connection: AsyncConnection, user_id: int, disabled: bool) -> None:
    await connection.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))


async def remove(connection: AsyncConnection, user_id: int) -> None:
    """The user, their tokens and chat identities; signatures keep the name they signed."""
    await connection.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
    await connection.execute(delete(chat_identities).where(chat_identities.c.user_id == user_id))
    await connection.execute(delete(users).where(users.c.id == user_id))


async def chat_owner(
    connection: AsyncConnection, provider: str, external_id: str
) -> dict[str, Any] | None:
    """The user a chat identity is linked to, if any."""
    row = (
        await connection.execute(
            select(users)
            .join(chat_identities, chat_identities.c.user_id == users.c.id)
            .where(
                chat_identities.c.provider == provider,
                chat_identities.c.external_id == external_id,
            )
        )
    ).first()
    return dict(row._mapping) if row else None


class IdentityTaken(Exception):
    """The chat identity is another user's; it moves only when asked to."""

    def __init__(self, provider: str, external_id: str, owner: str) -> None:
        super().__init__(f"{provider} identity {external_id} belongs to {owner}")
        self.owner = owner


async def link_chat(
    connection: AsyncConnection,
    user_id: int,
    provider: str,
    external_id: str,
    *,
    move: bool = False,
) -> None:
    """Link a chat identity to a user. One linked to someone else is refused
    (:class:`IdentityTaken`) unless ``move``: a chat button press must not silently start
    signing as another person."""
    owner = await chat_owner(connection, provider, external_id)
    if owner is not None and owner["id"] == user_id:
        return
    if owner is not None and not move:
        raise IdentityTaken(provider, external_id, owner["name"])
    if owner is not None:
        await connection.execute(
            update(chat_identities)
            .where(
                chat_identities.c.provider == provider,
                chat_identities.c.external_id == external_id,
            )
            .values(user_id=user_id)
        )
        return
    await connection.execute(
        insert(chat_identities),
        [{"user_id": user_id, "provider": provider, "external_id": external_id}],
    )


async def chat_identities_of(connection: AsyncConnection, user_id: int) -> list[dict[str, Any]]:
    result = await connection.execute(
        select(chat_identities).where(chat_identities.c.user_id == user_id)
    )
    return [dict(row._mapping) for row in result]
