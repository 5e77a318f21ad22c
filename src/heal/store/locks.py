"""Serialising the count-then-create of concurrent transactions on one key."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


def lock_id(key: str) -> int:
    """A stable signed 64-bit number for ``key`` (PostgreSQL's advisory lock space)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


async def serialise(connection: AsyncConnection, key: str) -> None:
    """Until this transaction ends, another one that asks for ``key`` waits.

    Two ingest batches that both count 2 of a limit of 3 must not both create the third:
    on PostgreSQL each takes the key's advisory lock first, so the second counts after the
    first committed. SQLite has one writer at a time already.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id(key)})
