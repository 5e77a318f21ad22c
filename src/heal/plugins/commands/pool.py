"""SSH connections kept open between commands, one pool per plugin.

Commands to the same (host, port, username, key) share a connection, a few channels at a
time (sshd allows 10 sessions per connection by default); a connection nobody used for
``idle_close`` seconds is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncssh

# Channels open at once on one connection; sshd's MaxSessions defaults to 10.
MAX_CHANNELS = 8
IDLE_CLOSE = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    username: str
    key: str  # the secret's name


@dataclass(slots=True, eq=False)
class _Pooled:
    target: Target
    connection: asyncssh.SSHClientConnection
    active: int = 0
    idle: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """One use of a pooled connection; give it back with :meth:`ConnectionPool.release`.
    ``reused``: the connection was open before (it may have been closed by the server
    since, which a failure to open a channel on it shows)."""

    connection: asyncssh.SSHClientConnection
    reused: bool
    entry: _Pooled = field(repr=False)


class ConnectionPool:
    def __init__(self, *, idle_close: float = IDLE_CLOSE, max_channels: int = MAX_CHANNELS) -> None:
        self.idle_close = idle_close
        self.max_channels = max_channels
        self.opened = 0
        """Connections opened since the pool was made (tests read it)."""
        self._open: dict[Target, list[_Pooled]] = {}
        self._locks: dict[Target, asyncio.Lock] = {}

    def connections(self, target: Target) -> int:
        """Connections open to ``target`` now."""
        return sum(1 for c in self._open.get(target, []) if not c.connection.is_closed())

    async def acquire(
        self,
        target: Target,
        connect: Callable[[], Awaitable[asyncssh.SSHClientConnection]],
    ) -> Lease:
        """A connection to ``target`` with a free channel: an open one, or a new one
        (``connect``'s errors are the caller's to interpret)."""
        lock = self._locks.setdefault(target, asyncio.Lock())
        async with lock:  # two commands to a new host open one connection, not two
            entries = [c for c in self._open.get(target, []) if not c.connection.is_closed()]
            self._open[target] = entries
            for entry in entries:
                if entry.active < self.max_channels:
                    return self._lend(entry, reused=True)
            entry = _Pooled(target, await connect())
            self.opened += 1
            entries.append(entry)
            return self._lend(entry, reused=False)

    def _lend(self, entry: _Pooled, *, reused: bool) -> Lease:
        entry.active += 1
        if entry.idle is not None:
            entry.idle.cancel()
            entry.idle = None
        return Lease(entry.connection, reused, entry)

    def release(self, lease: Lease) -> None:
        entry = lease.entry
        entry.active = max(0, entry.active - 1)
        pooled = entry in self._open.get(entry.target, [])
        if pooled and entry.active == 0 and entry.idle is None:
            loop = asyncio.get_running_loop()
            entry.idle = loop.call_later(self.idle_close, self._close_idle, entry)

    def discard(self, lease: Lease) -> None:
        """The connection is broken: close it, and never lend it again."""
        self._drop(lease.entry)

    def _drop(self, entry: _Pooled) -> None:
        entries = self._open.get(entry.target, [])
        if entry in entries:
            entries.remove(entry)
        if entry.idle is not None:
            entry.idle.cancel()
            entry.idle = None
        entry.connection.close()

    def _close_idle(self, entry: _Pooled) -> None:
        entry.idle = None
        if entry.active == 0:
            self._drop(entry)

    async def aclose(self) -> None:
        everything = [c for entries in self._open.values() for c in entries]
        for entry in everything:
            self._drop(entry)
        for entry in everything:
            await entry.connection.wait_closed()
