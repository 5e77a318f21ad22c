"""The database handle: one writer at a time on SQLite, a connection pool on PostgreSQL.

SQLite (the embedded default) allows one writer. Rather than let concurrent writers
collide on ``SQLITE_BUSY``, all writes go through a one-connection pool that begins
``IMMEDIATE`` transactions, while reads use their own pool and WAL snapshots. Writers
take turns at that connection in arrival order (:class:`WriteTurns`), in two lines that
alternate: heal's own commits (wakes, approvals) and ingests, so a wake never waits behind
a queue of ingests, nor an ingest behind a stream of wakes. The
count of writers waiting is the overload signal: past ``max_pending_writes`` an ingest is
refused at once with :class:`Overloaded`, which the API turns into 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from heal.store import sqlite_inline


class Overloaded(Exception):
    """Too many writes are queued; the caller should retry later."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("the database is busy; retry later")
        self.retry_after = retry_after


def is_transient(error: BaseException) -> bool:
    """Whether a failed transaction may well succeed if tried again: the connection was
    lost or the database was unreachable or busy, as opposed to a bug or a constraint."""
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(
            error, exc.OperationalError | exc.InterfaceError
        )
    return isinstance(error, exc.TimeoutError | TimeoutError | OSError)


class WriteTurns:
    """The one writer's turns, first come first served within each of two lines (heal's
    own commits, ingests), the lines taking turns: a wake waits behind at most one ingest
    per commit queued ahead of it, and a stream of wakes cannot starve ingest either.

    SQLAlchemy's pool hands a freed connection to whichever waiter the event loop wakes
    first, and gives up after its pool timeout; here each waiter holds a future in a
    FIFO, and a finished writer hands its turn to the head of the queue directly.
    """

    def __init__(self) -> None:
        self._busy = False
        self._internal: deque[asyncio.Future[None]] = deque()
        self._ingest: deque[asyncio.Future[None]] = deque()
        self._ingest_next = False

    @property
    def waiting(self) -> int:
        return len(self._internal) + len(self._ingest)

    async def acquire(self, *, ingest: bool) -> None:
        if not self._busy:
            self._busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._ingest if ingest else self._internal
        line.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # the turn came as we were cancelled: pass it on
            else:
                line.remove(turn)
            raise

    def release(self) -> None:
        lines = [self._internal, self._ingest]
        if self._ingest_next:
            lines.reverse()
        for line in lines:
            while line:
                turn = line.popleft()
                if not turn.done():
                    self._ingest_next = line is self._internal
                    turn.set_result(None)  # stays busy: the turn goes straight to it
                    return
        self._busy = False


def _sqlite_engine(url: str, *, writer: bool, pool_size: int) -> AsyncEngine:
    parsed = make_url(url)
    # The writer's statements are short and one at a time: they run on the event loop's
    # thread (heal.store.sqlite_inline), not as ~20 round trips per transaction to
    # aiosqlite's thread. Readers keep aiosqlite's threads: API reads can be long.
    inline = writer and not parsed.query and parsed.database not in (None, "", ":memory:")
    options: dict[str, Any] = {}
    if inline:
        path = parsed.database or ""
        options["async_creator"] = lambda: sqlite_inline.connect(path)
    else:
        options["connect_args"] = {"timeout": 30}
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=60, **options
    )
    # Inline: no waiting inside SQLite; sqlite_inline retries busy calls with asyncio.
    busy_ms = 0 if inline else 30000

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, max_pending_writes: int = 64) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self.max_pending_writes = max_pending_writes
        self._pending_writes = 0
        self.turns: WriteTurns | None = None
        if self.is_sqlite:
            self.turns = WriteTurns()
            self.writer = _sqlite_engine(url, writer=True, pool_size=1)
            self.reader = _sqlite_engine(url, writer=False, pool_size=pool_size)
        else:
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_recycle=1800,
            )
            self.writer = self.reader = engine

    @property
    def pending_writes(self) -> int:
        """Writes under way or waiting for their turn."""
        if self.turns is not None:
            return self._pending_writes + self.turns.waiting
        return self._pending_writes

    @asynccontextmanager
    async def write(self, *, shed: bool = False) -> AsyncIterator[AsyncConnection]:
        """One write transaction; commits on success, rolls back on error.

        ``shed=True`` marks an ingest: it is refused at once when ``max_pending_writes``
        writes are already under way or waiting, so that overload becomes a 503 instead
        of an ever longer wait. On SQLite ingests and other writes take turns
        (see :class:`WriteTurns`).
        """
        turns = self.turns
        if turns is None:
            async with self._pooled_write(shed=shed) as connection:
                yield connection
            return
        if shed and self.pending_writes >= self.max_pending_writes:
            raise Overloaded()
        await turns.acquire(ingest=shed)
        self._pending_writes += 1
        try:
            async with self.writer.begin() as connection:
                yield connection
        finally:
            self._pending_writes -= 1
            turns.release()

    @asynccontextmanager
    async def _pooled_write(self, *, shed: bool) -> AsyncIterator[AsyncConnection]:
        if shed and self._pending_writes >= self.max_pending_writes:
            raise Overloaded()
        self._pending_writes += 1
        try:
            async with self.writer.begin() as connection:
                yield connection
        finally:
            self._pending_writes -= 1

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as connection:
            yield connection

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
