"""Target 1: ingest through the Alertmanager webhook, over real HTTP, batches of 50, dedup on.

Variants: ``plain`` (alerts no rule matches: dedup + grouping into incidents, 500 groups) and
``actions`` (each alert opens its own incident and an ITSM action; the fake ITSM runs in a
process of its own, so heal's worker runs the actions while ingest goes on). Every fifth batch
is a redelivery of one of the last 100 batches, which dedup must drop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    ACTION_ALERT,
    HEADERS,
    PLAIN_ALERT,
    WEBHOOK,
    Alerts,
    CpuWindow,
    Result,
    Sampler,
    Stack,
    itsm_counts,
    percentile,
    py_spy,
    stack,
)

BATCH = 50
REDELIVER_EVERY = 5  # every 5th batch is a redelivery: a 20 % share


@dataclass
class Load:
    sent_batches: int = 0
    redelivered: int = 0
    alerts: int = 0
    new: int = 0
    duplicates: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


async def _post(s: Stack, body: bytes, load: Load, deadline: float) -> None:
    """Send one batch; a 503 (overload) is retried like Alertmanager would, and counted."""
    url = f"{s.heal_url}{WEBHOOK}"
    while True:
        began = time.perf_counter()
        response = await s.client.post(url, content=body, headers=HEADERS)
        load.latencies.append(time.perf_counter() - began)
        if response.status_code == 202:
            report = response.json()
            load.accepted += 1
            load.alerts += report["received"]
            load.new += report["new"]
            load.duplicates += report["duplicates"]
            return
        if response.status_code == 503 and time.monotonic() < deadline:
            load.rejected += 1
            await asyncio.sleep(0.05)
            continue
        load.errors += 1
        if load.errors <= 3:
            print(f"  ingest: HTTP {response.status_code}: {response.text[:200]}")
        return


async def drive(
    s: Stack, alerts: Alerts, *, seconds: float, concurrency: int, seed: int, max_batches: int
) -> tuple[Load, float]:
    """``concurrency`` connections send batches back to back for ``seconds`` (or max_batches)."""
    rng = random.Random(seed)
    recent: deque[bytes] = deque(maxlen=100)
    load = Load()
    start = time.monotonic()
    deadline = start + seconds

    async def connection() -> None:
        while time.monotonic() < deadline and load.sent_batches < max_batches:
            index = load.sent_batches
            load.sent_batches += 1
            if recent and index % REDELIVER_EVERY == REDELIVER_EVERY - 1:
                body = rng.choice(recent)
                load.redelivered += 1
            else:
                body, _ids = alerts.batch(BATCH)
                recent.append(body)
            await _post(s, body, load, deadline)

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return load, time.monotonic() - start


async def run(
    variant: str,
    run: int,
    *,
    seconds: float,
    concurrency: int,
    profile: Path | None = None,
) -> Result:
    actions = variant == "actions"
    async with stack(itsm=actions, schedule=2.0, finish_after_polls=1) as s:
        alerts = Alerts(
            ACTION_ALERT if actions else PLAIN_ALERT,
            services=None if actions else 500,
            prefix=f"i{run}-",
        )
        # Warm up: connections, SQLite page cache, the first incidents.
        await drive(s, alerts, seconds=30, concurrency=concurrency, seed=run, max_batches=20)
        children = [c for c in (s.heal, s.itsm) if c is not None]
        cpu = CpuWindow(*children)
        before = await itsm_counts(s) if s.itsm else {}
        spy = py_spy(s.heal.pid, seconds, profile) if profile else None
        with Sampler(*children) as sampler:
            cpu.start()
            load, elapsed = await drive(
                s,
                alerts,
                seconds=seconds,
                concurrency=concurrency,
                seed=run,
                max_batches=int(seconds * 20_000 / BATCH),
            )
            cpu.stop()
        after = await itsm_counts(s) if s.itsm else {}
        if spy:
            spy.wait()
    figures = {
        "alerts/s": load.alerts / elapsed,
        "new alerts/s": load.new / elapsed,
        "p50 ms": 1000 * percentile(load.latencies, 50),
        "p99 ms": 1000 * percentile(load.latencies, 99),
        "heal CPU %": cpu.percent.get("heal", 0.0),
        "heal loop CPU %": cpu.loop.get("heal", 0.0),
        "heal RSS MiB": sampler.peak["heal"] / 2**20,
    }
    if not actions:  # with actions, heal's worker takes whatever CPU ingest leaves
        figures["heal CPU ms/batch"] = 1000 * cpu.seconds.get("heal", 0.0) / max(1, load.accepted)
    notes = {
        "seconds": round(elapsed, 1),
        "batches": load.sent_batches,
        "redelivered batches": load.redelivered,
        "alerts": load.alerts,
        "new": load.new,
        "duplicates": load.duplicates,
        "503 retried": load.rejected,
        "errors": load.errors,
    }
    if actions:
        figures["itsm CPU %"] = cpu.percent.get("itsm", 0.0)
        notes["tickets created during window"] = after["create"] - before["create"]
        notes["polls during window"] = after["poll"] - before["poll"]
    return Result(f"ingest/{variant}", run, figures, notes)
