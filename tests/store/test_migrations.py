"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from heal.store import migrate
from heal.store.db import Database
from heal.store.tables import declared, metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


async def test_migrations_match_the_declared_tables(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        assert await migrate.current_revision(db) is None
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()

        def differences(connection: Any) -> list[Any]:
            return list(
                compare_metadata(
                    MigrationContext.configure(connection, opts={"include_name": declared}),
                    metadata,
                )
            )

        async with db.read() as connection:
            diff = await connection.run_sync(differences)
        # procrastinate's tables and indexes on PostgreSQL are not heal's to declare.
        diff = [d for d in diff if "procrastinate_" not in repr(d[1])]
        assert diff == []
        await migrate.upgrade(db)  # a second upgrade is a no-op
    finally:
        await db.dispose()
