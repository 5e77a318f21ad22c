"""The distributed runtime: PostgreSQL holds the state, procrastinate holds the wakes.

A wake is a procrastinate job deferred on the *same connection, in the same transaction*
as the state change that scheduled it (``configure(connection=…)``), so the two commit
or roll back together. Each job carries ``queueing_lock`` and ``lock`` equal to the
action: never more than one waiting wake per action, never two running at once. Timers
stay deadlines on the action row; the job's ``schedule_at`` is just the row's
``next_wake_at``.

Periodic tasks (deferred once per tick by procrastinate, so exactly one worker acts):
the sweeper re-wakes actions whose wake was lost, and stalled jobs (their worker died
mid-wake) are retried; the engine's version check absorbs the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import procrastinate
from procrastinate import JobContext, RetryStrategy
from procrastinate.exceptions import ProcrastinateException
from procrastinate.jobs import Job, Status
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.engine.engine import Engine, utcnow
from heal.observability import metrics
from heal.observability.logging import get_logger
from heal.store import actions_repo, timeline_repo
from heal.store.db import Database

log = get_logger("heal.runtime")

Sweep = Callable[[], Awaitable[int]]
QUEUE = "heal"
FETCH_POLL_SECONDS = 0.1
WAKE_TASK = "heal.wake"


def action_lock(action_id: int) -> str:
    return f"heal-action-{action_id}"


def every_seconds(interval: int) -> str:
    """A procrastinate cron that fires every ``interval`` seconds.

    croniter reads a sixth field as *seconds*, so the interval goes there; in the first
    (minutes) field it fired every second of minutes :00 and :30 only. The seconds field
    restarts each minute, so only a divisor of 60 gives equal gaps.
    """
    if interval < 1 or 60 % interval:
        raise ValueError(f"a sweep interval must divide 60 seconds, not {interval}")
    return f"* * * * * */{interval}"


def conninfo(database_url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy) as a libpq URL for procrastinate."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("the procrastinate runtime needs a PostgreSQL HEAL_DATABASE_URL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ProcrastinateRuntime:
    def __init__(
        self,
        database: Database,
        *,
        concurrency: int = 64,
        stalled_after: float = 30.0,
        sweep_interval: int = 30,
        shutdown_grace: float = 10.0,
        redact: Redactor | None = None,
    ) -> None:
        self.db = database
        # For the timeline entries of recovered wakes, written with or without an engine.
        self.redact = redact or Redactor()
        self.clock: Callable[[], datetime] = utcnow
        self.concurrency = concurrency
        # A worker beats every stalled_after/3 s; silent for stalled_after s, it is dead
        # and its running wakes are stalled.
        self.stalled_after = stalled_after
        self.shutdown_grace = shutdown_grace
        sweep_cron = every_seconds(sweep_interval)
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=conninfo(database.url),
                min_size=1,
                max_size=max(4, concurrency // 4),
            )
        )
        self._engine: Engine | None = None
        self._worker: asyncio.Task[None] | None = None
        self._opened = False
        self._stopping = False
        self._sweeps: list[Sweep] = []

        # A wake that raises (the database went away mid-wake) is retried by
        # procrastinate; node failures never raise, the engine records them.
        @self.app.task(
            name=WAKE_TASK,
            queue=QUEUE,
            pass_context=True,
            retry=RetryStrategy(max_attempts=20, wait=1, linear_wait=1),
        )
        async def wake(context: JobContext, action_id: int, version: int) -> None:
            scheduled = context.job.scheduled_at
            if scheduled is not None:
                lateness = (utcnow() - scheduled.astimezone(UTC)).total_seconds()
                metrics.WAKE_LATENESS.observe(max(0.0, lateness))
            await self.engine.wake(action_id, version)

        @self.app.periodic(cron=sweep_cron, periodic_id="sweep")
        @self.app.task(
            name="heal.sweep", queue=QUEUE, queueing_lock="heal.sweep", pass_context=False
        )
        async def sweep(timestamp: int) -> None:
            await self.sweep()

        @self.app.periodic(cron=sweep_cron, periodic_id="retry-stalled")
        @self.app.task(
            name="heal.retry_stalled",
            queue=QUEUE,
            queueing_lock="heal.retry_stalled",
            pass_context=False,
        )
        async def retry_stalled(timestamp: int) -> None:
            await self.retry_stalled()

        self.wake_task = wake

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the runtime was not started with an engine")
        return self._engine

    def add_sweep(self, sweep: Sweep) -> None:
        """More periodic work for the sweeper (e.g. expiring approvals)."""
        self._sweeps.append(sweep)

    # -- WakeScheduler -------------------------------------------------------------------
    async def schedule(
        self, connection: AsyncConnection, action_id: int, version: int, at: datetime
    ) -> None:
        lock = action_lock(action_id)
        # A waiting wake for an older version would block the new one (queueing_lock);
        # it could only have found the version moved on, so it goes, in this transaction.
        await connection.execute(
            text("DELETE FROM procrastinate_jobs WHERE queueing_lock = :lock AND status = 'todo'"),
            {"lock": lock},
        )
        raw = await connection.get_raw_connection()
        await self.wake_task.configure(
            connection=raw.driver_connection,
            queueing_lock=lock,
            lock=lock,
            schedule_at=at,
        ).defer_async(action_id=action_id, version=version)

    def committed(self, at: datetime) -> None:
        """Nothing to do: procrastinate NOTIFYs its workers when the insert commits."""

    # -- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        if not self._opened:
            await self.app.open_async()
            self._opened = True

    async def start(self, engine: Engine) -> None:
        self._engine = engine
        self._stopping = False
        await self.open()
        self._worker = asyncio.create_task(self._supervise(), name="heal-procrastinate-worker")

    async def _supervise(self) -> None:
        """Keep a procrastinate worker running until stop().

        procrastinate stops its worker when one of its side tasks dies, as the LISTEN
        connection does when PostgreSQL restarts. A heal worker must outlive that: start
        a new one, backing off while the database is away.
        """
        delay = 1.0
        while not self._stopping:
            began = time.monotonic()
            try:
                await self.app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=self.concurrency,
                    install_signal_handlers=False,
                    delete_jobs="successful",
                    shutdown_graceful_timeout=self.shutdown_grace,
                    stalled_worker_timeout=self.stalled_after,
                    update_heartbeat_interval=max(1.0, self.stalled_after / 3),
                    # Wakes are jobs scheduled in the future, and nothing NOTIFYs when one
                    # falls due; procrastinate's default 5 s poll made that 5 s of lateness
                    # and a collapse in throughput. A fetch is one indexed query.
                    fetch_job_polling_interval=FETCH_POLL_SECONDS,
                )
            except Exception:
                log.exception("the procrastinate worker failed")
            if self._stopping:
                return
            if time.monotonic() - began > 60:
                delay = 1.0
            log.warning("the procrastinate worker stopped; starting a new one", in_seconds=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def stop(self, grace: float | None = None) -> None:
        """Stop fetching jobs; running wakes get ``shutdown_grace`` seconds to finish.
        A wake cut short stays ``doing`` and is retried as stalled: the version check
        makes the replay safe."""
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._opened:
            await self.app.close_async()
            self._opened = False

    # -- periodic work -------------------------------------------------------------------
    async def sweep(self) -> int:
        now = utcnow()
        async with self.db.write() as connection:
            revived = await actions_repo.rewake_lost(connection, now)
            for action_id, version in revived:
                await self.schedule(connection, action_id, version, now)
            lost = await _actions_without_jobs(connection)
            for action_id, version, wake_at in lost:
                await self.schedule(connection, action_id, version, wake_at)
        count = len(revived) + len(lost)
        if count:
            log.warning("re-woke actions whose wake was lost", count=count)
        for extra in self._sweeps:
            await extra()
        return count

    async def retry_stalled(self) -> int:
        """Recover the wakes dead workers left ``doing``; how many were re-run.

        A wake whose state change had committed before its worker died has nothing left
        to do (the next wake, if any, is already waiting): its job is deleted, not left
        ``failed``. A wake that was really lost is put back to ``todo``, and the action's
        timeline says so.
        """
        stalled = list(
            await self.app.job_manager.get_stalled_jobs(
                queue=QUEUE, task_name=WAKE_TASK, seconds_since_heartbeat=self.stalled_after
            )
        )
        rerun = 0
        for job in stalled:
            rerun += await self._recover(job)
        if stalled:
            log.warning(
                "recovered wakes of dead workers",
                re_run=rerun,
                already_done=len(stalled) - rerun,
            )
        return rerun

    async def _recover(self, job: Job) -> bool:
        """True when the stalled wake is re-run, False when its job was only cleaned up."""
        assert job.id is not None
        manager = self.app.job_manager
        action_id, version = job.task_kwargs["action_id"], job.task_kwargs["version"]
        assert isinstance(action_id, int)  # wake()'s arguments
        assert isinstance(version, int)
        async with self.db.read() as connection:
            row = await actions_repo.load(connection, action_id)
        if row is not None and row["version"] == version:
            try:
                await manager.retry_job(job)
            except ProcrastinateException:
                pass  # a newer wake for the action is already waiting: this one is moot
            else:
                await self._note_recovery(row, job)
                return True
        # Deleted, not finished as failed: a failed wake would sit in procrastinate_jobs
        # forever, though nothing about it went wrong.
        await manager.finish_job_by_id_async(job.id, Status.SUCCEEDED, delete_job=True)
        return False

    async def _note_recovery(self, row: dict[str, Any], job: Job) -> None:
        now = self.clock()
        due = job.scheduled_at.astimezone(UTC) if job.scheduled_at else now
        late = max(0, round((now - due).total_seconds()))
        entry = TimelineEntry(
            EventKind.WAKE_RECOVERED,
            f"worker lost, wake re-run after {late} s",
            {"late_seconds": late, "node": row["current_node"], "attempt": job.attempts + 1},
            action_id=row["id"],
        )
        async with self.db.write() as connection:
            await timeline_repo.append(connection, row["incident_id"], [entry], now, self.redact)


async def _actions_without_jobs(connection: AsyncConnection) -> list[tuple[int, int, datetime]]:
    """In-flight actions with a wake time but no waiting or running job: lost wakes."""
    result = await connection.execute(
        text("""
        SELECT a.id, a.version, a.next_wake_at
        FROM actions a
        WHERE a.next_wake_at IS NOT NULL
          AND a.next_wake_at < now() - interval '30 seconds'
          AND NOT EXISTS (
            SELECT 1 FROM procrastinate_jobs j
            WHERE j.lock = 'heal-action-' || a.id AND j.status IN ('todo', 'doing'))
        LIMIT 500
    """)
    )
    return [(row.id, row.version, row.next_wake_at) for row in result]
