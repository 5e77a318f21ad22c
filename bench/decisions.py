"""Decision overhead without an LLM: what deciding adds to an incident, per decision.

``python -m bench --only decisions`` runs, in this process, what ``heal serve`` runs for a
rule with ``decide:`` (SQLite, the decision service, the tiers the policy configures: the
playbooks when enabled, then the expert rules; no LLM), over ``--decisions`` incidents.
Each decision is timed from its claim to the commit of its verdict and its action (the
read of the incident and its alerts, every tier, the checks of the proposal, the gate,
the action's insert and first wake, the timeline): first one after another, then all at
once, as a storm of new incidents would start them. Target: p99 <= 50 ms.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import Result, percentile
from heal.app import Heal
from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.policy.loader import load_policy_text
from heal.settings import Settings
from heal.store import migrate

POLICY = """
kubernetes: {allowed_namespaces: ["=~team-.*"]}
actions:
  restart-workload:
    type: local
    command: [echo, "{{ params.namespace }}/{{ params.name }}"]
    params:
      namespace: {type: string, enum_from: kubernetes.allowed_namespaces}
      name: {type: string, pattern: "^[a-z0-9-]{1,63}$"}
  open-ticket:
    type: local
    command: [echo, ticket]
decide:
  expert_rules:
    - {name: crash, match: {alertname: "=~.*Crash.*"}, action: restart-workload,
       params: {namespace: "{{ alert.labels.namespace }}", name: "{{ alert.labels.deployment }}"}}
    - {name: default, action: open-ticket}
rules:
  - name: workload-down
    match: {alertname: "=~Bench.*"}
    group_by: [alertname, namespace, deployment]
    decide: {catalogue: [restart-workload, open-ticket]}
"""


def _alert(index: int) -> Alert:
    labels = {
        "alertname": "BenchPodCrashLooping" if index % 2 else "BenchLatencyHigh",
        "namespace": f"team-{index % 7}",
        "deployment": f"svc-{index}",
        "pod": f"svc-{index}-7f9c4-x{index}",
        "severity": "critical",
    }
    return Alert(
        fingerprint=fingerprint_of(labels),
        status=AlertStatus.FIRING,
        labels=labels,
        annotations={"summary": f"svc-{index} is crash looping"},
        starts_at=datetime.now(UTC) - timedelta(seconds=1),
    )


async def _opened(heal: Heal, alerts: list[Alert]) -> list[int]:
    """Ingest, keeping the decisions it opens for the bench to run (not started)."""
    opened: list[int] = []
    heal.ingest.on_decisions = opened.extend
    await heal.ingest.ingest(alerts)
    return opened


async def _timed(heal: Heal, decision_id: int) -> float:
    began = time.perf_counter()
    state = await heal.decisions.run(decision_id)
    if state is None or state.value != "ready":
        raise RuntimeError(f"decision {decision_id} ended {state}")
    return (time.perf_counter() - began) * 1000


async def _measure(workdir: Path, decisions: int) -> dict[str, float]:
    heal = Heal.build(
        Settings(database_url=f"sqlite+aiosqlite:///{workdir}/decisions.db"),
        load_policy_text(POLICY),
    )
    await migrate.upgrade(heal.db)
    try:
        for warm in await _opened(heal, [_alert(-i) for i in range(1, 21)]):
            await _timed(heal, warm)
        one_by_one = await _opened(heal, [_alert(i) for i in range(decisions)])
        sequential = [await _timed(heal, d) for d in one_by_one]
        burst_ids = await _opened(heal, [_alert(decisions + i) for i in range(decisions)])
        began = time.perf_counter()
        burst = await asyncio.gather(*(_timed(heal, d) for d in burst_ids))
        wall = time.perf_counter() - began
    finally:
        await heal.stop()
    return {
        "p50 ms": percentile(sequential, 50),
        "p99 ms": percentile(sequential, 99),
        "burst p99 ms": percentile(list(burst), 99),
        "burst decisions/s": len(burst) / wall,
    }


async def run(run: int, *, decisions: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="heal-bench-decisions-") as tmp:
        figures = await _measure(Path(tmp), decisions)
    return Result("decisions", run, figures, {"decisions": decisions, "tiers": "expert (no LLM)"})
