"""An aiosqlite connection that runs its SQLite calls on the event loop's own thread.

aiosqlite hands every driver call (cursor, execute, fetchall, close, BEGIN, COMMIT) to
the connection's thread and waits for the answer: ~20 thread round trips per wake and
~100 per ingest batch, which cost more CPU than the SQL they carry. heal's writer runs
small statements on one connection, so the writer runs them here instead.

Waiting for a lock is the one thing that must not happen on the event loop's thread.
The connection is opened with no busy timeout, so a write lock held by another process
(``heal`` CLI commands, a second worker) fails at once with ``SQLITE_BUSY``; the call is
then retried after an asyncio sleep, backing off, until :data:`BUSY_TIMEOUT` has passed,
which is what SQLite's own busy handler would have done with the thread blocked. A call
that failed with ``SQLITE_BUSY`` had no effect, so retrying it is safe.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite

BUSY_TIMEOUT = 30.0
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.05


class _RunNow:
    """Stands where aiosqlite keeps the queue to its thread: runs each call at once.

    aiosqlite itself (connect, stop) and SQLAlchemy's adapter (the isolation level
    setter) put ``(future, function)`` pairs on that queue directly.
    """

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the waiter, as aiosqlite's thread does
            if future is not None and not future.done():
                future.set_exception(exc)
        else:
            if future is not None and not future.done():
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """``aiosqlite.Connection`` without its thread: for a connection whose calls are short."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # no thread to start

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        deadline: float | None = None
        backoff = _FIRST_BACKOFF
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + BUSY_TIMEOUT
                elif now >= deadline:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


def connect(database: str, **kwargs: Any) -> InlineConnection:
    """Like ``aiosqlite.connect``, without a busy timeout (see the module's docstring)."""
    kwargs.setdefault("check_same_thread", False)
    kwargs["timeout"] = 0
    return InlineConnection(partial(sqlite3.connect, database, **kwargs))
