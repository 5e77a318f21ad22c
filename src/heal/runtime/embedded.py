"""The embedded runtime: wakes are the ``next_wake_at`` column, claimed in-process.

One process (``heal serve``) owns the database. A claimer leases due rows in batches and
hands each to a bounded pool of asyncio tasks that call ``Engine.wake``. Scheduling a
wake is just writing ``next_wake_at`` in the same transaction as the state change, so
the two can never disagree; after commit the claimer is nudged if the new wake is
sooner than it meant to look again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.engine.engine import Engine, utcnow
from heal.observability import metrics
from heal.observability.logging import get_logger
from heal.store import actions_repo
from heal.store.db import Database

log = get_logger("heal.runtime")

Sweep = Callable[[], Awaitable[int]]

# Longer than any node may run (request timeouts are capped at 300 s), so a lease only
# runs out when its holder died; a wake retries a failed commit until LEASE - MARGIN.
LEASE = timedelta(seconds=360)
LEASE_MARGIN = timedelta(seconds=15)
GATHER_SECONDS = 0.005


class EmbeddedRuntime:
    def __init__(
        self,
        database: Database,
        *,
        concurrency: int = 64,
        idle_poll: float = 1.0,
        sweep_interval: float = 30.0,
    ) -> None:
        self.db = database
        self.concurrency = concurrency
        self.idle_poll = idle_poll
        self.sweep_interval = sweep_interval
        self._kick = asyncio.Event()
        self._sleep_until: datetime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._sweeps: list[Sweep] = []
        self._running = 0
        self._saturated = False
        self._gather_below = max(1, concurrency // 4)

    def add_sweep(self, sweep: Sweep) -> None:
        """More periodic work for the sweeper (e.g. expiring approvals)."""
        self._sweeps.append(sweep)

    # -- WakeScheduler -------------------------------------------------------------------
    async def schedule(
        self, connection: AsyncConnection, action_id: int, version: int, at: datetime
    ) -> None:
        """Nothing to do: ``next_wake_at`` on the row, written by the caller, is the wake."""

    def committed(self, at: datetime) -> None:
        if self._sleep_until is None or at <= self._sleep_until:
            self._kick.set()

    # -- worker --------------------------------------------------------------------------
    async def start(self, engine: Engine) -> None:
        async with self.db.write() as connection:
            released = await actions_repo.release_all_claims(connection)
        if released:
            log.info("released leases of a previous run", count=released)
        self._loops = [
            asyncio.create_task(self._claim_loop(engine), name="heal-claimer"),
            asyncio.create_task(self._sweep_loop(), name="heal-sweeper"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let in-flight wakes finish (their leases cover the rest)."""
        self._stopping.set()
        self._kick.set()
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()

    async def _claim_loop(self, engine: Engine) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self._claim_batch(engine)
            except Exception:
                log.exception("claiming wakes failed; retrying")
                await asyncio.sleep(self.idle_poll)
                continue
            if claimed or self._saturated:
                continue
            await self._idle()

    async def _claim_batch(self, engine: Engine) -> int:
        await self._slots.acquire()  # wait for at least one free slot
        self._slots.release()
        if self._saturated and self.concurrency - self._running < self._gather_below:
            # Under load, let a few more wakes finish so one claim transaction leases many
            # of them instead of one per freed slot.
            await asyncio.sleep(GATHER_SECONDS)
        free = self.concurrency - self._running
        if free <= 0:
            return 0
        self._kick.clear()
        now = utcnow()
        async with self.db.write() as connection:
            claims = await actions_repo.claim_due(connection, now, now + LEASE, free)
        self._saturated = len(claims) == free
        for row in claims:
            metrics.WAKE_LATENESS.observe(max(0.0, (now - row["next_wake_at"]).total_seconds()))
            await self._slots.acquire()
            self._running += 1
            task = asyncio.create_task(self._run(engine, row, now + LEASE - LEASE_MARGIN))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claims)

    async def _run(self, engine: Engine, row: dict[str, Any], held_until: datetime) -> None:
        try:
            # Logged by the engine, with its rule. The engine retried its commit until
            # shortly before the lease ends, so the wake comes back soon after.
            with contextlib.suppress(Exception):
                held_for = (held_until - utcnow()).total_seconds()
                await engine.wake(row["id"], row["version"], row, held_for=held_for)
        finally:
            self._running -= 1
            self._slots.release()

    async def _idle(self) -> None:
        async with self.db.read() as connection:
            next_due = await actions_repo.next_due_at(connection)
        now = utcnow()
        delay = self.idle_poll
        if next_due is not None:
            delay = min(delay, max(0.0, (next_due - now).total_seconds()))
        self._sleep_until = now + timedelta(seconds=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), timeout=delay)
        self._sleep_until = None

    async def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")

    async def sweep(self) -> int:
        async with self.db.write() as connection:
            revived = await actions_repo.rewake_lost(connection, utcnow())
        if revived:
            log.warning("re-woke actions whose wake was lost", count=len(revived))
            self._kick.set()
        for extra in self._sweeps:
            await extra()
        return len(revived)
