"""Target 2: alert -> first node started, at a steady 200 alerts/s.

An open-loop sender posts a webhook of ``batch`` alerts every ``batch / rate`` seconds whatever
the answers do; every alert opens its own incident with an ITSM action. The fake ITSM
(latency 0, a process of its own) stamps each ticket on arrival; the ticket's title carries
the alert's unique ``bench_id`` label, so each alert is matched to its ``create_ticket``
request. Latency is ticket time minus the moment the webhook answered 202 (also minus the
moment it was sent). Both clocks are this machine's wall clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx

from bench.common import (
    ACTION_ALERT,
    HEADERS,
    WEBHOOK,
    Alerts,
    CpuWindow,
    Result,
    Stack,
    itsm_counts,
    percentile,
    py_spy,
    stack,
)

WARMUP_SECONDS = 2.0


async def _send(
    s: Stack, body: bytes, ids: list[str], sent: dict[str, tuple[float, float]], failures: list[int]
) -> None:
    t_sent = time.time()
    try:
        response = await s.client.post(f"{s.heal_url}{WEBHOOK}", content=body, headers=HEADERS)
    except httpx.HTTPError:
        failures.append(0)
        return
    t_done = time.time()
    if response.status_code != 202:
        failures.append(response.status_code)
        return
    for bench_id in ids:
        sent[bench_id] = (t_sent, t_done)


async def run(
    run: int, *, seconds: float, rate: float, batch: int, profile: Path | None = None
) -> Result:
    async with stack(itsm=True, schedule=2.0, finish_after_polls=1) as s:
        assert s.itsm is not None
        alerts = Alerts(ACTION_ALERT, services=None, prefix=f"l{run}-")
        interval = batch / rate
        warmup = int(WARMUP_SECONDS / interval)
        total = warmup + int(seconds / interval)
        sent: dict[str, tuple[float, float]] = {}
        measured: set[str] = set()
        failures: list[int] = []
        tasks: list[asyncio.Task[None]] = []
        cpu = CpuWindow(s.heal, s.itsm)
        spy = None
        start = time.monotonic() + 0.1
        try:
            for i in range(total):
                body, ids = alerts.batch(batch)
                if i == warmup:
                    cpu.start()
                    spy = py_spy(s.heal.pid, seconds, profile) if profile else None
                if i >= warmup:
                    measured.update(ids)
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(_send(s, body, ids, sent, failures)))
            behind = time.monotonic() - (start + (total - 1) * interval)
            await asyncio.gather(*tasks)
        finally:  # interrupted: no request outlives the servers
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        cpu.stop()
        wanted = len(sent)
        deadline = time.monotonic() + 30
        while (await itsm_counts(s))["tickets"] < wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        response = await s.client.get(f"{s.itsm.url}/_bench/tickets")
        tickets = {title.split()[-1]: at for title, at in response.json()}
        if spy:
            spy.wait()

    from_202, from_sent, request = [], [], []
    missing = 0
    for bench_id in measured:
        if bench_id not in sent:
            continue
        t_sent, t_done = sent[bench_id]
        request.append(t_done - t_sent)
        at = tickets.get(bench_id)
        if at is None:  # counted as infinitely late, so it cannot flatter the percentiles
            missing += 1
            from_202.append(math.inf)
            from_sent.append(math.inf)
            continue
        from_202.append(at - t_done)
        from_sent.append(at - t_sent)
    figures = {
        "p50 ms (from 202)": 1000 * percentile(from_202, 50),
        "p95 ms (from 202)": 1000 * percentile(from_202, 95),
        "p99 ms (from 202)": 1000 * percentile(from_202, 99),
        "p99 ms (from send)": 1000 * percentile(from_sent, 99),
        "max ms (from send)": 1000 * max(from_sent, default=float("nan")),
        "webhook p99 ms": 1000 * percentile(request, 99),
        "heal CPU %": cpu.percent.get("heal", 0.0),
        "heal loop CPU %": cpu.loop.get("heal", 0.0),
    }
    notes = {
        "alerts measured": len(from_202),
        "inf": "no ticket within 30 s of the last send",
        "no ticket within 30 s": missing,
        "failed requests": len(failures),
        "sender behind schedule s": round(max(0.0, behind), 3),
        "rate": f"{rate:g} alerts/s as {rate / batch:g} requests/s of {batch}",
        "ticket before 202 (share)": round(sum(1 for x in from_202 if x < 0) / len(from_202), 3)
        if from_202
        else 0,
    }
    return Result("latency", run, figures, notes)
