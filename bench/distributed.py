"""Issue 3: the distributed runtime (PostgreSQL + procrastinate) against its yardstick.

    python -m bench.distributed                  # yardstick, then heal with 1, 2, 4 workers
    python -m bench.distributed --actions 2000 --window 10   # quicker

1. Yardstick: procrastinate's own no-op job drain rate on the same database: N no-op jobs
   deferred in one batch, drained by one worker process (concurrency C), jobs/s.
2. heal: ``--actions`` in-flight actions (10,000), each polling the fake ITSM (its own
   process) every ``--interval`` s so that demand exceeds what the workers can do; then
   W = 1, 2, 4 ``heal worker`` processes run for a warm-up and a measured window. Wakes/s
   are node calls seen by the fake per second. Lateness is sampled from the database:
   how far past ``scheduled_at`` the due-but-not-started wake jobs are (p99 of samples).

Every database is a fresh one on the local PostgreSQL, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import procrastinate
import psycopg

from bench._proc import Child, install_sigterm, stop_all
from bench.common import percentile, policy_text
from heal.app import Heal
from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.policy import load_policy_text
from heal.runtime.distributed import conninfo
from heal.settings import Settings
from heal.store import migrate
from heal.store.db import Database

ADMIN = os.environ.get("HEAL_BENCH_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
LATENESS_SQL = (
    "SELECT coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY "
    "extract(epoch FROM now() - scheduled_at)), 0) FROM procrastinate_jobs "
    "WHERE status = 'todo' AND task_name = 'heal.wake' AND scheduled_at < now()"
)


def noop_app(url: str) -> tuple[procrastinate.App, object]:
    """procrastinate with one task that does nothing: the yardstick."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))

    @app.task(name="bench.noop", queue="bench")
    async def noop() -> None:
        return None

    return app, noop


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    name = f"heal_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        yield url
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _count(url: str, sql: str) -> float:
    async with await psycopg.AsyncConnection.connect(conninfo(url)) as connection:
        row = await (await connection.execute(sql)).fetchone()
        return float(row[0] or 0) if row else 0.0


async def yardstick(jobs: int, concurrency: int) -> float:
    async with fresh_database() as url:
        app, noop = noop_app(url)
        async with app.open_async():
            for start in range(0, jobs, 1000):
                count = min(1000, jobs - start)
                await noop.batch_defer_async(*({} for _ in range(count)))  # type: ignore[attr-defined]
        workdir = Path(tempfile.mkdtemp(prefix="heal-bench-"))
        worker = Child(
            "noop-worker",
            "bench.distributed",
            ["--noop-worker", url, "--concurrency", str(concurrency)],
            workdir,
        )
        began = time.monotonic()
        await worker.start(timeout=60)
        while await _count(url, "SELECT count(*) FROM procrastinate_jobs WHERE status='todo'"):
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - began
        worker.stop(5)
        return jobs / elapsed


async def heal_run(
    actions: int, workers: int, interval: float, warmup: float, window: float, concurrency: int
) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="heal-bench-"))
    itsm = Child("itsm", "bench.itsm", ["--finish-after-polls", str(10**9)], workdir)
    await itsm.start()
    try:
        async with fresh_database() as url:
            policy = workdir / "policy.yaml"
            policy.write_text(policy_text(itsm.url, schedule=interval))
            settings = Settings(_env_file=None, database_url=url, runtime="procrastinate")  # type: ignore[call-arg]
            heal = Heal.build(settings, load_policy_text(policy.read_text()))
            await heal.start(worker=False)
            try:
                for start in range(0, actions, 500):
                    batch = []
                    for i in range(start, min(actions, start + 500)):
                        labels = {"alertname": "BenchAction", "service": f"d{i}"}
                        batch.append(
                            Alert(
                                fingerprint_of(labels),
                                AlertStatus.FIRING,
                                labels,
                                {},
                                heal.engine.clock(),
                            )
                        )
                    await heal.ingest.ingest(batch)
            finally:
                await heal.stop()
            env = {
                "HEAL_DATABASE_URL": url,
                "HEAL_RUNTIME": "procrastinate",
                "HEAL_CONFIG": str(policy),
                "HEAL_DB_POOL_SIZE": "8",
                "HEAL_LOG_LEVEL": "WARNING",
            }
            procs = [
                Child(
                    f"worker{n}",
                    "bench.distributed",
                    ["--heal-worker", "--concurrency", str(concurrency)],
                    workdir,
                    **env,
                )
                for n in range(workers)
            ]
            for proc in procs:
                await proc.start(timeout=60)
            async with httpx.AsyncClient() as client:

                async def calls() -> float:
                    counts = (await client.get(f"{itsm.url}/_bench/counts")).json()
                    return float(counts["create"] + counts["poll"])

                await asyncio.sleep(warmup)
                before, began = await calls(), time.monotonic()
                lateness: list[float] = []
                while time.monotonic() - began < window:
                    lateness.append(await _count(url, LATENESS_SQL))
                    await asyncio.sleep(0.5)
                rate = (await calls() - before) / (time.monotonic() - began)
            for proc in procs:
                proc.stop(10)
            return {"wakes/s": round(rate), "lateness p99 s": round(percentile(lateness, 0.99), 2)}
    finally:
        itsm.stop(5)


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    stick = await yardstick(args.jobs, args.concurrency)
    print(
        f"yardstick: procrastinate no-op drain, 1 worker x {args.concurrency}: {stick:,.0f} jobs/s"
    )
    for workers in (1, 2, 4):
        figures = await heal_run(
            args.actions, workers, args.interval, args.warmup, args.window, args.concurrency
        )
        per = figures["wakes/s"] / workers
        print(
            f"heal, {workers} worker(s): {figures['wakes/s']:,} wakes/s "
            f"({per:,.0f} per worker = {per / stick:.0%} of the yardstick), "
            f"lateness p99 {figures['lateness p99 s']} s"
        )


def noop_worker(url: str, concurrency: int, port_file: str) -> None:
    async def run() -> None:
        app, _ = noop_app(url)
        async with app.open_async():
            Path(port_file).write_text("1")
            await app.run_worker_async(
                queues=["bench"], concurrency=concurrency, delete_jobs="successful"
            )

    asyncio.run(run())


def heal_worker(concurrency: int, port_file: str) -> None:
    from heal.cli.main import app

    Path(port_file).write_text("1")
    sys.argv = ["heal", "worker", "--concurrency", str(concurrency)]
    app()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.distributed")
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--noop-worker")
    parser.add_argument("--heal-worker", action="store_true")
    parser.add_argument("--port-file")
    parsed = parser.parse_args()
    if parsed.noop_worker:
        noop_worker(parsed.noop_worker, parsed.concurrency, parsed.port_file)
    elif parsed.heal_worker:
        heal_worker(parsed.concurrency, parsed.port_file)
    else:
        install_sigterm()
        try:
            asyncio.run(main(parsed))
        finally:
            stop_all()
