"""SQLite's one writer under a storm: turns in arrival order, ingests shed past the bound,
heal's own commits never queued behind ingests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from heal.store.db import Database, Overloaded

WRITERS = 32
WRITES_EACH = 10


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/storm.db", max_pending_writes=64)
    async with database.write() as connection:
        await connection.execute(text("CREATE TABLE storm (writer INTEGER, n INTEGER)"))
    yield database
    await database.dispose()


class Storm:
    """Records the order in which writers arrive at ``write()`` and start inside it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.arrived: list[str] = []
        self.started: list[str] = []
        self.shed: list[str] = []
        self.ahead_of: dict[str, int] = {}  # writes under way or queued when it arrived

    async def write(self, name: str, *, shed: bool = True) -> None:
        self.arrived.append(name)  # no await before write() queues it: arrival order
        self.ahead_of[name] = self.db.pending_writes
        try:
            async with self.db.write(shed=shed) as connection:
                self.started.append(name)
                await connection.execute(
                    text("INSERT INTO storm VALUES (:w, :n)"), {"w": len(self.started), "n": 0}
                )
                await asyncio.sleep(0)  # let the others queue up behind this one
        except Overloaded:
            self.shed.append(name)

    async def writer(self, index: int) -> None:
        for n in range(WRITES_EACH):
            await self.write(f"w{index}-{n}")


async def test_writers_start_in_arrival_order(db: Database) -> None:
    storm = Storm(db)
    await asyncio.gather(*(storm.writer(i) for i in range(WRITERS)))

    assert storm.shed == []  # 32 writers never fill a queue of 64
    assert len(storm.started) == WRITERS * WRITES_EACH
    assert storm.started == storm.arrived
    async with db.read() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM storm"))).scalar_one()
    assert count == WRITERS * WRITES_EACH


async def test_ingests_past_the_bound_are_shed_not_queued(db: Database) -> None:
    db.max_pending_writes = 8
    storm = Storm(db)
    await asyncio.gather(*(storm.writer(i) for i in range(WRITERS)))

    assert storm.shed  # the storm was refused in part, at once
    assert len(storm.started) + len(storm.shed) == WRITERS * WRITES_EACH
    accepted = [name for name in storm.arrived if name not in set(storm.shed)]
    assert storm.started == accepted  # the accepted ones still in arrival order
    # An accepted ingest found fewer writes than the bound ahead of it (writing or
    # queued): the queue filled up, and nobody waited behind more.
    waited_behind = [storm.ahead_of[name] for name in accepted]
    assert max(waited_behind) == db.max_pending_writes - 1


async def test_a_wake_commit_goes_before_queued_ingests(db: Database) -> None:
    storm = Storm(db)
    holder = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with db.write(shed=True):
            holder.set()
            await release.wait()

    holding = asyncio.create_task(hold())
    await holder.wait()
    ingests = [asyncio.create_task(storm.write(f"ingest-{i}")) for i in range(20)]
    await asyncio.sleep(0)
    wake = asyncio.create_task(storm.write("wake", shed=False))
    await asyncio.sleep(0)
    assert db.pending_writes == 22  # the holder, 20 ingests and the wake
    release.set()
    await asyncio.gather(holding, *ingests, wake)

    assert storm.started[0] == "wake"
    assert storm.started[1:] == [f"ingest-{i}" for i in range(20)]


async def test_a_cancelled_waiter_gives_up_its_turn(db: Database) -> None:
    storm = Storm(db)
    release = asyncio.Event()
    holder = asyncio.Event()

    async def hold() -> None:
        async with db.write():
            holder.set()
            await release.wait()

    holding = asyncio.create_task(hold())
    await holder.wait()
    gone = asyncio.create_task(storm.write("gone"))
    after = asyncio.create_task(storm.write("after"))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    await asyncio.gather(holding, after)
    assert storm.started == ["after"]
    assert db.pending_writes == 0


async def test_wakes_and_ingests_take_turns(db: Database) -> None:
    storm = Storm(db)
    release = asyncio.Event()
    holder = asyncio.Event()

    async def hold() -> None:
        async with db.write():
            holder.set()
            await release.wait()

    holding = asyncio.create_task(hold())
    await holder.wait()
    tasks = [asyncio.create_task(storm.write(f"wake-{i}", shed=False)) for i in range(3)]
    tasks += [asyncio.create_task(storm.write(f"ingest-{i}")) for i in range(3)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(holding, *tasks)
    assert storm.started == ["wake-0", "ingest-0", "wake-1", "ingest-1", "wake-2", "ingest-2"]
