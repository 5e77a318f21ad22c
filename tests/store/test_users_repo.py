"""Chat identities: one person each, moved to another only when asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from heal.store import migrate, users_repo
from heal.store.db import Database

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/users.db")
    await migrate.upgrade(database)
    yield database
    await database.dispose()


async def test_an_identity_of_someone_else_is_not_taken_over_silently(db: Database) -> None:
    async with db.write() as connection:
        alice = await users_repo.add(connection, "alice", "approver", [], NOW)
        bob = await users_repo.add(connection, "bob", "approver", [], NOW)
        await users_repo.link_chat(connection, alice, "telegram", "111")
        await users_repo.link_chat(connection, alice, "telegram", "111")  # again: a no-op
    with pytest.raises(users_repo.IdentityTaken, match="telegram identity 111 belongs to alice"):
        async with db.write() as connection:
            await users_repo.link_chat(connection, bob, "telegram", "111")
    async with db.read() as connection:
        owner = await users_repo.chat_owner(connection, "telegram", "111")
    assert owner is not None
    assert owner["name"] == "alice"

    async with db.write() as connection:
        await users_repo.link_chat(connection, bob, "telegram", "111", move=True)
        owner = await users_repo.chat_owner(connection, "telegram", "111")
    assert owner is not None
    assert owner["name"] == "bob"
