"""Tier 1's lookup over 10,000 approved playbooks (issue 10: p99 <= 10 ms).

``python -m bench --only playbooks`` fills a fresh SQLite database (migrated as heal does)
with ``--playbooks`` approved playbooks: 180 alert names of 50 playbooks each (namespaces,
workloads and a minor label varied, stats random), and one crowded alert name with the rest.
It then times ``PlaybookTier.propose`` in this process, as the decision service calls it,
for three kinds of alert in turn: the exact signature of a playbook, one minor label off
(a similar match), and another workload (no match: every playbook of the name compared);
and, separately, no-match alerts of the crowded name (the worst case: all of its rows read).
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Result
from heal.decide.playbooks import PlaybookTier
from heal.decide.tiers import DecisionInput
from heal.domain.playbooks import annotation_text, params_key, signature_of, wilson_lower_bound
from heal.policy.loader import load_policy_text
from heal.policy.models import Policy
from heal.store import migrate
from heal.store.db import Database
from heal.store.tables import playbooks

NAMES = 180
PER_NAME = 50
CROWDED = "CrowdedAlert"
ACTIONS = ("restart", "scale-up", "roll-back", "open-ticket")
WHEN = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = (
    "actions:\n"
    + "".join(
        f"  {name}:\n    type: http\n    nodes:\n      - function: create_task\n"
        f"        name: {name}\n        request: {{url: http://x.invalid/, method: POST}}\n"
        for name in ACTIONS
    )
    + (
        "rules:\n  - name: bench\n    match: {severity: critical}\n"
        f"    decide: {{catalogue: [{', '.join(ACTIONS)}]}}\n"
        "decide:\n  expert_rules: [{name: default, action: open-ticket}]\n"
    )
)


def _labels(name: str, i: int) -> dict[str, str]:
    return {
        "alertname": name,
        "namespace": f"ns-{i % 7}",
        "deployment": f"app-{i}",
        "tier": f"t{i % 3}",
    }


def _row(labels: dict[str, str], rng: random.Random) -> dict[str, Any]:
    signature = signature_of(labels, "critical")
    runs = rng.randint(1, 60)
    successes = rng.randint(0, runs)
    params = {"replicas": rng.randint(1, 5)}
    return {
        "name": f"{signature.alertname}: {labels['deployment']}",
        "signature_key": signature.key,
        "signature": signature.as_record(),
        "alertname": signature.alertname,
        "annotation_text": annotation_text({"summary": f"{labels['deployment']} is unhealthy"}),
        "action_name": rng.choice(ACTIONS),
        "params": params,
        "params_key": params_key(params),
        "status": "approved",
        "runs": runs,
        "verified_successes": successes,
        "rejections": 0,
        "lower_bound": wilson_lower_bound(successes, runs),
        "mttr_seconds": None,
        "mttr_samples": 0,
        "learned_from": None,
        "last_used_at": None,
        "created_at": WHEN,
        "updated_at": WHEN,
        "version": 0,
    }


async def _fill(database: Database, total: int, rng: random.Random) -> None:
    rows = [_row(_labels(f"Alert{n}", i), rng) for n in range(NAMES) for i in range(PER_NAME)]
    rows += [_row(_labels(CROWDED, i), rng) for i in range(max(total - len(rows), 0))]
    async with database.write() as connection:
        for start in range(0, len(rows), 1000):
            await connection.execute(playbooks.insert(), rows[start : start + 1000])


def _input(policy: Policy, labels: dict[str, str]) -> DecisionInput:
    return DecisionInput(
        decision_id=1,
        incident={"id": 1, "severity": "critical"},
        alerts=[
            {
                "name": labels["alertname"],
                "labels": {**labels, "pod": f"{labels['deployment']}-7d9f8b6c4-x2x9z"},
                "annotations": {"summary": f"{labels['deployment']} is unhealthy"},
            }
        ],
        rule=policy.rules[0],
        catalogue={name: policy.actions[name] for name in ACTIONS},
        policy=policy,
    )


def _queries(rng: random.Random, count: int) -> list[dict[str, str]]:
    queries = []
    for k in range(count):
        labels = _labels(f"Alert{rng.randrange(NAMES)}", rng.randrange(PER_NAME))
        if k % 3 == 1:
            labels["tier"] = "other"  # similar
        elif k % 3 == 2:
            labels["deployment"] = "unknown"  # no match
        queries.append(labels)
    return queries


async def _time(tier: PlaybookTier, inputs: list[DecisionInput]) -> tuple[list[float], int]:
    latencies: list[float] = []
    proposed = 0
    for request in inputs:
        began = time.perf_counter()
        answer = await tier.propose(request, time.monotonic() + 10)
        latencies.append((time.perf_counter() - began) * 1000)
        proposed += answer.proposal is not None
    return latencies, proposed


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run(run_number: int, *, total: int = 10_000, matches: int = 1500) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="heal-bench-playbooks-"))
    rng = random.Random(run_number)
    database = Database(f"sqlite+aiosqlite:///{workdir}/heal.db")
    try:
        await migrate.upgrade(database)
        await _fill(database, total, rng)
        policy = load_policy_text(POLICY)
        tier = PlaybookTier(database)
        await _time(tier, [_input(policy, q) for q in _queries(rng, 50)])  # warm up
        mixed, proposed = await _time(tier, [_input(policy, q) for q in _queries(rng, matches)])
        crowded = [
            _input(policy, {**_labels(CROWDED, 0), "deployment": "unknown"}) for _ in range(100)
        ]
        worst, _ = await _time(tier, crowded)
    finally:
        await database.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(
        "playbooks",
        run_number,
        {
            "match p50 ms": _p(mixed, 50),
            "match p99 ms": _p(mixed, 99),
            "crowded p99 ms": _p(worst, 99),
        },
        {
            "playbooks": total,
            "matches": matches,
            "proposed": proposed,
            "crowded name": max(total - NAMES * PER_NAME, 0),
        },
    )
