"""Component costs behind the benchmarks, in CPU time per operation (robust to a busy machine).

``python -m bench.micro`` measures, in this process: one aiosqlite thread round trip; one
read and one write transaction through ``heal.store.db.Database``; inserting 50 alert rows
with ``alerts_repo.insert_many`` and as one plain batched INSERT; and one HTTP GET to the fake
ITSM (run as a child process) with httpx as ``HttpPlugin`` configures it (its own connection
pool) and with httpx's stock pool, at concurrency 1, 8 and 32, against a bare asyncio stream
(and aiohttp when it is importable).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from bench._proc import Child, run, stop_all
from heal.plugins.http import HttpPlugin
from heal.store import alerts_repo, migrate
from heal.store.db import Database
from heal.store.tables import alerts


async def cpu_per_op(n: int, op: Callable[[], Awaitable[Any]], concurrency: int = 1) -> float:
    """CPU microseconds per call of ``op`` (whole process: all threads)."""

    async def worker() -> None:
        for _ in range(n // concurrency):
            await op()

    for _ in range(min(50, n)):  # warm up
        await op()
    began = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return 1e6 * (time.process_time() - began) / n


def alert_rows(start: int, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    labels = {"alertname": "Bench", "service": "svc", "instance": "10.0.0.1:9100", "job": "node"}
    return [
        {
            "fingerprint": f"fp{start + i}",
            "starts_at": now,
            "status": "firing",
            "labels": {**labels, "bench_id": str(start + i)},
            "annotations": {"summary": "benchmark"},
            "source": "alertmanager",
            "received_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]


async def database(report: Callable[[str, float], None]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="heal-micro-"))
    db = Database(f"sqlite+aiosqlite:///{workdir}/heal.db")
    await migrate.upgrade(db)
    async with db.write() as connection:
        await connection.execute(text("CREATE TABLE bench (id INTEGER PRIMARY KEY, v INTEGER)"))
        await connection.execute(text("INSERT INTO bench VALUES (1, 0)"))

    aio: Any = None

    async def round_trip() -> None:
        await aio._execute(lambda: None)

    async def read() -> None:
        async with db.read() as connection:
            await connection.execute(text("SELECT v FROM bench WHERE id = 1"))

    async def write() -> None:
        async with db.write() as connection:
            await connection.execute(text("UPDATE bench SET v = v + 1 WHERE id = 1"))

    async with db.read() as connection:  # readers keep aiosqlite's thread (the writer: none)
        raw = await connection.get_raw_connection()
        aio = raw.driver_connection
        report("aiosqlite thread round trip (no SQL)", await cpu_per_op(2000, round_trip))
    report("read transaction, one SELECT by key", await cpu_per_op(1000, read))
    report("write transaction, one UPDATE by key", await cpu_per_op(1000, write))

    counter = iter(range(0, 10**9, 50))

    async def ordered() -> None:
        async with db.write() as connection:
            await alerts_repo.insert_many(connection, alert_rows(next(counter), 50))

    async def batched() -> None:
        async with db.write() as connection:
            await connection.execute(
                insert(alerts).returning(alerts.c.id, alerts.c.fingerprint, alerts.c.starts_at),
                alert_rows(next(counter), 50),
            )

    report("insert 50 alerts, alerts_repo.insert_many", await cpu_per_op(100, ordered))
    report("insert 50 alerts, one plain INSERT RETURNING", await cpu_per_op(100, batched))
    await db.dispose()


def stock_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        follow_redirects=False,
    )


async def http(report: Callable[[str, float], None]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="heal-micro-"))
    fake = Child("itsm", "bench.itsm", ["--finish-after-polls", str(10**9)], workdir)
    await fake.start()
    try:
        url = fake.url
        headers = {"Idempotency-Key": "k", "X-Heal-Action": "1"}
        sn = ""
        for name, plugin_pool in (("HttpPlugin", True), ("stock pool", False)):
            # As HttpPlugin builds its client; "stock pool" without its pool fix.
            client = HttpPlugin()._client if plugin_pool else stock_client()
            async with client:
                created = await client.post(f"{url}/create_ticket/", json={"fields": []})
                sn = created.json()["data"]["sn"]

                async def get(client: httpx.AsyncClient = client, sn: str = sn) -> None:
                    response = await client.get(
                        f"{url}/get_ticket_status/", params={"sn": sn}, headers=headers, timeout=30
                    )
                    response.json()

                for concurrency in (1, 8, 32):
                    cost = await cpu_per_op(1600, get, concurrency)
                    report(f"HTTP GET, httpx ({name}), {concurrency} concurrent", cost)
        try:
            import aiohttp
        except ImportError:
            aiohttp = None
        if aiohttp is not None:
            async with aiohttp.ClientSession() as session:

                async def aget() -> None:
                    async with session.get(
                        f"{url}/get_ticket_status/", params={"sn": sn}, headers=headers
                    ) as response:
                        await response.json()

                for concurrency in (1, 32):
                    cost = await cpu_per_op(1600, aget, concurrency)
                    report(f"HTTP GET, aiohttp, {concurrency} concurrent", cost)
        reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
        request = (
            f"GET /get_ticket_status/?sn={sn} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Idempotency-Key: k\r\nX-Heal-Action: 1\r\n\r\n"
        ).encode()

        async def bare() -> None:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)

        report("HTTP GET, bare asyncio stream, 1 at a time", await cpu_per_op(1600, bare))
        writer.close()
    finally:
        fake.stop()


async def main() -> None:
    rows: list[tuple[str, float]] = []

    def report(name: str, micros: float) -> None:
        rows.append((name, micros))
        print(f"  {name:<52} {micros:>9,.0f} us CPU", flush=True)

    await database(report)
    await http(report)


if __name__ == "__main__":
    try:
        run(main())
    finally:
        stop_all()
