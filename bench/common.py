"""What the benchmarks share: the policy, alert payloads, the process stack, statistics."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench._proc import Child

TOKEN = "bench-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
# HEAL_API_TOKENS holds hashes only; the bench reads as well as ingests.
SERVICE_TOKEN = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest() + ":ingest+read"
WEBHOOK = "/api/v1/alerts/alertmanager"
# Extra arguments for every heal server (``--workers``, ``--experiment``), set by __main__.
HEAL_ARGS: list[str] = []
ACTION_ALERT = "BenchAction"  # matched by the rule, which opens a ticket
PLAIN_ALERT = "BenchNoRule"  # matched by no rule: ingest, dedup and grouping only

POLICY = """\
settings: {{itsm_url: "{itsm_url}"}}
defaults: {{group_by: [alertname, service]}}
actions:
  ticket:
    type: http
    timeout: {timeout}
    failed_retry: {{is_enabled: true, max_retry_times: 2, retry_interval: 5}}
    template_detail: {{title: "{{{{ alert.labels.alertname }}}} {{{{ alert.labels.bench_id }}}}"}}
    nodes:
      - function: create_task
        name: Create ticket
        request: {{url: "{{{{ settings.itsm_url }}}}/create_ticket/", method: POST}}
        inputs:
          - key: fields
            value: "execute_config.template_detail[].{{key: key, value: value}}"
            format: jmespath
        outputs:
          - {{key: sn, value: response.data.sn, format: jmespath}}
          - {{key: url, value: "{{{{ settings.itsm_url }}}}/ticket/{{{{ sn }}}}", format: jinja2}}
        need_insert_log: true
        log_template: "Ticket {{{{ sn }}}} created"
        next_function: schedule
      - function: schedule
        name: Poll ticket
        request: {{url: "{{{{ settings.itsm_url }}}}/get_ticket_status/", method: GET}}
        inputs: [{{key: sn, value: pre_node_outputs.sn, format: jmespath}}]
        outputs:
          - {{key: current_status, value: response.data.current_status, format: jmespath}}
          - {{key: approve_result, value: response.data.approve_result, format: jmespath}}
        finished_rule: {{key: current_status, method: in, value: [FINISHED, TERMINATED]}}
        success_rule: {{key: approve_result, method: equal, value: true}}
        need_schedule: true
        schedule_timedelta: {schedule}
rules:
  - name: bench-ticket
    match: {{alertname: {action_alert}}}
    group_by: [alertname, service]
    actions: [{{action: ticket, signal: [firing]}}]
"""


def policy_text(itsm_url: str, *, schedule: float = 2.0, timeout: int = 7200) -> str:
    return POLICY.format(
        itsm_url=itsm_url, schedule=schedule, timeout=timeout, action_alert=ACTION_ALERT
    )


# -- alerts --------------------------------------------------------------------------------------


class Alerts:
    """Alertmanager (v4) webhook bodies; every alert is a new occurrence with a unique bench_id.

    ``services``: how many distinct ``service`` labels to cycle through (the incident group);
    ``None`` gives every alert its own service, hence its own incident.
    """

    def __init__(self, alertname: str, *, services: int | None = None, prefix: str = "a") -> None:
        self.alertname = alertname
        self.services = services
        self.prefix = prefix
        self.count = 0
        self.starts = datetime.now(UTC) - timedelta(seconds=5)

    def alert(self) -> tuple[str, dict[str, Any]]:
        self.count += 1
        n = self.count
        bench_id = f"{self.prefix}{n}"
        service = f"svc-{n % self.services if self.services else bench_id}"
        labels = {
            "alertname": self.alertname,
            "severity": "critical" if n % 3 else "warning",
            "service": service,
            "instance": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}:9100",
            "job": "node",
            "env": "prod",
            "bench_id": bench_id,
        }
        body = {
            "status": "firing",
            "labels": labels,
            "annotations": {
                "summary": f"{self.alertname} on {service}",
                "description": "benchmark alert: the service answers 5xx on more than 5% of calls",
            },
            "startsAt": self.starts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up%3D%3D0",
            "fingerprint": hashlib.blake2b(bench_id.encode(), digest_size=8).hexdigest(),
        }
        return bench_id, body

    def batch(self, size: int) -> tuple[bytes, list[str]]:
        ids, alerts = [], []
        for _ in range(size):
            bench_id, body = self.alert()
            ids.append(bench_id)
            alerts.append(body)
        payload = {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{self.alertname}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "heal",
            "groupLabels": {"alertname": self.alertname},
            "commonLabels": {"alertname": self.alertname, "job": "node", "env": "prod"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example:9093",
            "alerts": alerts,
        }
        return json.dumps(payload).encode(), ids


# -- the processes -------------------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    heal: Child
    itsm: Child | None
    client: httpx.AsyncClient

    @property
    def heal_url(self) -> str:
        return self.heal.url


@asynccontextmanager
async def stack(
    *,
    itsm: bool,
    schedule: float = 2.0,
    finish_after_polls: int = 1,
    keep: bool = False,
) -> AsyncIterator[Stack]:
    """Start the fake ITSM (optional) and heal in processes of their own; stop both after.

    Without the fake, the action's URL is a closed port (127.0.0.1:9).
    """
    workdir = Path(tempfile.mkdtemp(prefix="heal-bench-"))
    children: list[Child] = []
    grace = 15.0
    client = httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
    )
    try:
        fake = None
        itsm_url = "http://127.0.0.1:9"
        if itsm:
            fake = Child(
                "itsm",
                "bench.itsm",
                ["--finish-after-polls", str(finish_after_polls), "--latency", "0"],
                workdir,
            )
            children.append(fake)
            await fake.start()
            itsm_url = fake.url
        policy = workdir / "policy.yaml"
        policy.write_text(policy_text(itsm_url, schedule=schedule))
        args = ["--database-url", f"sqlite+aiosqlite:///{workdir}/heal.db", "--policy", str(policy)]
        args += HEAL_ARGS
        heal = Child("heal", "bench.server", args, workdir, HEAL_API_TOKENS=SERVICE_TOKEN)
        children.append(heal)
        await heal.start()
        yield Stack(workdir, heal, fake, client)
    except BaseException:
        grace = 2.0  # failed or interrupted: no need to let heal finish its wakes
        raise
    finally:
        await client.aclose()
        for child in reversed(children):
            child.stop(grace)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def heal_metrics(s: Stack) -> dict[str, Any]:
    response = await s.client.get(f"{s.heal_url}/metrics")
    response.raise_for_status()
    return {family.name: family for family in text_string_to_metric_families(response.text)}


async def itsm_counts(s: Stack) -> dict[str, int]:
    assert s.itsm is not None
    response = await s.client.get(f"{s.itsm.url}/_bench/counts")
    response.raise_for_status()
    result: dict[str, int] = response.json()
    return result


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def buckets(families: dict[str, Any], name: str, **labels: str) -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` of a histogram, summed over series matching ``labels``."""
    family = families.get(name)
    totals: dict[float, float] = {}
    if family is not None:
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            le = float(sample.labels["le"])
            totals[le] = totals.get(le, 0.0) + sample.value
    return sorted(totals.items())


def bucket_delta(
    before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    old = dict(before)
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def histogram_quantile(cumulative: list[tuple[float, float]], q: float) -> float:
    """Like PromQL's ``histogram_quantile`` (linear inside a bucket); inf past the last bound."""
    if not cumulative or cumulative[-1][1] <= 0:
        return math.nan
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return math.inf
            inside = count - below
            return le if inside <= 0 else lower + (le - lower) * (rank - below) / inside
        lower, below = le, count
    return math.inf


# -- results -------------------------------------------------------------------------------------


@dataclass
class Result:
    bench: str
    run: int
    figures: dict[str, float]
    notes: dict[str, Any] = field(default_factory=dict)


class Sampler:
    """Samples RSS of the given children every ``interval`` seconds; keeps the peak."""

    def __init__(self, *children: Child, interval: float = 0.25) -> None:
        self.children = children
        self.interval = interval
        self.peak: dict[str, int] = {c.name: 0 for c in children}
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            for child in self.children:
                self.peak[child.name] = max(self.peak[child.name], child.rss())
            await asyncio.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task:
            self._task.cancel()


class CpuWindow:
    """CPU each child used between ``start()`` and ``stop()``, as % of one core: all threads
    (``percent[name]``) and the main thread, which runs the event loop (``loop[name]``)."""

    def __init__(self, *children: Child) -> None:
        self.children = children
        self._start: dict[str, tuple[float, float]] = {}
        self._t0 = 0.0
        self.percent: dict[str, float] = {}
        self.loop: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def _times(self) -> dict[str, tuple[float, float]]:
        return {c.name: (c.cpu_times(), c.main_thread_cpu_times()) for c in self.children}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = self._times()

    def stop(self) -> dict[str, float]:
        elapsed = max(1e-9, time.monotonic() - self._t0)
        for name, (total, main) in self._times().items():
            total0, main0 = self._start[name]
            self.seconds[name] = total - total0
            self.percent[name] = 100 * (total - total0) / elapsed
            self.loop[name] = 100 * (main - main0) / elapsed
        return self.percent


# -- profiling -----------------------------------------------------------------------------------


def py_spy(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` (collapsed stacks) on ``pid`` for ``seconds``, if installed."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found: pip install py-spy to profile)")
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "100",
            "--format",
            "raw",
            "--function",
            "--nonblocking",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
