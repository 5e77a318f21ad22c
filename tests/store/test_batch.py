"""Multi-row INSERTs map ids back to their rows; the SQLite writer waits for locks
without holding up the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text

from heal.store.batch import insert_returning_ids
from heal.store.db import Database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/heal.db"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url)
    yield database
    await database.dispose()


async def test_ids_follow_rows_also_when_a_key_repeats_within_the_batch(db: Database) -> None:
    table = Table(
        f"batch_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("k", String, nullable=False),
        Column("n", Integer, nullable=False),
    )
    async with db.write() as connection:
        await connection.run_sync(table.metadata.create_all)
    rows = [{"k": key, "n": n} for n, key in enumerate("abacabda")]
    try:
        async with db.write() as connection:
            ids = await insert_returning_ids(connection, table, rows, ("k",))
            assert await insert_returning_ids(connection, table, [], ("k",)) == []
        assert len(set(ids)) == len(rows)
        async with db.read() as connection:
            stored = {row.id: row.n for row in await connection.execute(select(table))}
        assert [stored[i] for i in ids] == [row["n"] for row in rows]
    finally:
        async with db.write() as connection:
            await connection.run_sync(table.metadata.drop_all)


async def test_sqlite_writer_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/heal.db")
    try:
        async with db.write() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        other = sqlite3.connect(tmp_path / "heal.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # as another process holding the write lock

        async def write() -> None:
            async with db.write() as connection:
                await connection.execute(text("INSERT INTO t VALUES (1)"))

        writing = asyncio.create_task(write())
        for _ in range(20):  # the loop keeps running other tasks meanwhile
            await asyncio.sleep(0.005)
        assert not writing.done()
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(writing, timeout=30)
        async with db.read() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 1
    finally:
        await db.dispose()
