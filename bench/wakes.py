"""Target 3: 10,000 in-flight polling actions; wakes/s, wake lateness, peak RSS.

10,000 alerts (each its own incident) are ingested through the webhook; each action creates
a ticket at the fake ITSM, then polls it every ``interval`` seconds forever (the fake never
finishes a ticket). The fake runs in a process of its own, so it does not share heal's core.
After every ticket exists and a warm-up, a window measures: polls per second at the fake
(= wakes that ran a node), ``heal_wake_lateness_seconds`` (the change over the window, read
from /metrics), and heal's RSS (sampled every 0.25 s over the whole run, peak kept).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.common import (
    ACTION_ALERT,
    HEADERS,
    WEBHOOK,
    Alerts,
    CpuWindow,
    Result,
    Sampler,
    bucket_delta,
    buckets,
    heal_metrics,
    histogram_quantile,
    itsm_counts,
    py_spy,
    stack,
)

LATENESS = "heal_wake_lateness_seconds"
NODE = "heal_node_duration_seconds"
NEVER = 10**9  # polls before the fake finishes a ticket


async def run(
    run: int,
    *,
    actions: int,
    interval: float,
    seconds: float,
    profile: Path | None = None,
) -> Result:
    notes: dict[str, object] = {
        "actions": actions,
        "poll interval s": interval,
        "demand wakes/s": round(actions / interval),
    }
    async with stack(itsm=True, schedule=interval, finish_after_polls=NEVER) as s:
        assert s.itsm is not None
        with Sampler(s.heal, s.itsm) as sampler:
            # 1. Ingest: one incident and one action per alert.
            alerts = Alerts(ACTION_ALERT, services=None, prefix=f"w{run}-")
            began = time.monotonic()
            queue = [alerts.batch(50)[0] for _ in range(actions // 50)]

            async def sender() -> None:
                while queue:
                    body = queue.pop()
                    while True:
                        response = await s.client.post(
                            f"{s.heal_url}{WEBHOOK}", content=body, headers=HEADERS
                        )
                        if response.status_code == 202:
                            break
                        if response.status_code != 503:
                            raise RuntimeError(f"ingest: HTTP {response.status_code}")
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(sender() for _ in range(4)))
            notes["ingest s"] = round(time.monotonic() - began, 1)

            # 2. Every action has created its ticket (bounded wait).
            wanted = (actions // 50) * 50
            deadline = time.monotonic() + max(120.0, actions / 20)
            while (await itsm_counts(s))["tickets"] < wanted:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            counts = await itsm_counts(s)
            notes["tickets"] = counts["tickets"]
            notes["all tickets created after s"] = round(time.monotonic() - began, 1)

            # 3. Warm-up: let the polls spread out into their steady rhythm.
            await asyncio.sleep(max(5.0, 2 * interval))

            # 4. The window.
            cpu = CpuWindow(s.heal, s.itsm)
            m0, c0 = await heal_metrics(s), await itsm_counts(s)
            t0 = time.monotonic()
            cpu.start()
            spy = py_spy(s.heal.pid, seconds, profile) if profile else None
            per_second: list[int] = []
            last = c0["poll"]
            while time.monotonic() - t0 < seconds:
                await asyncio.sleep(min(1.0, seconds - (time.monotonic() - t0)))
                now = (await itsm_counts(s))["poll"]
                per_second.append(now - last)
                last = now
            m1, c1 = await heal_metrics(s), await itsm_counts(s)
            elapsed = time.monotonic() - t0
            cpu.stop()
            if spy:
                spy.wait()
            final_rss = s.heal.rss()

    lateness = bucket_delta(buckets(m0, LATENESS), buckets(m1, LATENESS))
    node = bucket_delta(buckets(m0, NODE), buckets(m1, NODE))
    figures = {
        "wakes/s": (c1["poll"] - c0["poll"]) / elapsed,
        "lateness p50 s": histogram_quantile(lateness, 0.50),
        "lateness p99 s": histogram_quantile(lateness, 0.99),
        "node p50 ms": 1000 * histogram_quantile(node, 0.50),
        "node p99 ms": 1000 * histogram_quantile(node, 0.99),
        "peak RSS MiB": sampler.peak["heal"] / 2**20,
        "heal CPU ms/wake": 1000 * cpu.seconds["heal"] / max(1, c1["poll"] - c0["poll"]),
        "heal CPU %": cpu.percent["heal"],
        "heal loop CPU %": cpu.loop["heal"],
        "itsm CPU %": cpu.percent["itsm"],
    }
    notes.update(
        {
            "window s": round(elapsed, 1),
            "wakes claimed in window": int(lateness[-1][1]) if lateness else 0,
            "inf": "later than the histogram's last bound (30 s)",
            "polls per 1 s sample (min/max)": (
                f"{min(per_second, default=0)}/{max(per_second, default=0)}"
            ),
            "RSS at end MiB": round(final_rss / 2**20),
            "fake overlaps": c1["overlaps"],
        }
    )
    return Result("wakes", run, figures, notes)
