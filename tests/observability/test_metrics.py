"""/metrics of heal serve and heal worker, and the deploy/ files built on them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HealFactory
from helpers import Clock, alert, policy_text
from processes import free_port
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from heal.api.app import create_app
from heal.demo.itsm import FakeITSM

DEPLOY = Path(__file__).parents[2] / "deploy"
APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 1, expires_in: 600}
"""
# Made by Prometheus itself for every target, not by heal.
PROMETHEUS_OWN = {"up"}


def _exported(text: str) -> dict[str, list[Any]]:
    """Every series name heal exports (with its samples), histogram and counter parts too."""
    names: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_count", "_sum"],
        }.get(family.type, [""])
        for suffix in suffixes:
            names.setdefault(family.name + suffix, [])
        for sample in family.samples:
            names.setdefault(sample.name, []).append(sample)
    return names


def _referenced() -> set[str]:
    rules = YAML(typ="safe").load((DEPLOY / "prometheus-rules.yaml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(rule.get("alert") for group in rules["groups"] for rule in group["rules"])
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert dashboard["panels"]
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\b(heal_\w+|up)\b(?=\s*[{\[(])", expr)}


async def test_deploy_files_use_only_metrics_heal_exports(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]) + APPROVAL, clock=clock)
    await heal.ingest.ingest([alert()])  # an action waiting for its approval
    transport = httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://heal") as client:
        scraped = (await client.get("/metrics")).text
    exported = _exported(scraped)

    referenced = _referenced()
    assert {"heal_action_status_total", "heal_approvals_pending", "up"} <= referenced
    assert referenced - PROMETHEUS_OWN - exported.keys() == set()
    # The gauges are the database's truth, labelled by the policy's names.
    [pending] = exported["heal_approvals_pending"]
    assert (pending.labels, pending.value) == (
        {"rule": "checkout-down", "action": "open-ticket"},
        1,
    )
    [waiting] = exported["heal_actions_in_flight"]
    assert waiting.labels["status"] == "waiting"
    assert exported["heal_database_up"][0].value == 1
    assert exported["heal_outbox_pending"][0].value == 1  # its card, no chat configured
    assert exported["heal_outbox_oldest_pending_seconds"][0].value > 0


@pytest.mark.postgres
async def test_a_worker_serves_metrics(fresh_postgres_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HEAL_DATABASE_URL": fresh_postgres_url,
        "HEAL_RUNTIME": "procrastinate",
        "HEAL_HOST": "127.0.0.1",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "heal", "worker", "--metrics-port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        text = await _scrape(f"http://127.0.0.1:{port}/metrics", worker)
        exported = _exported(text)
        assert exported["heal_database_up"][0].value == 1
        assert "heal_actions_in_flight" in exported
        assert "heal_action_status_total" in exported
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    assert code == 0, log.read_text()
    printed = " ".join(log.read_text().split())  # rich wraps long lines
    assert f"metrics on http://127.0.0.1:{port}/metrics" in printed


async def _scrape(url: str, worker: subprocess.Popen[bytes]) -> str:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert worker.poll() is None, "the worker exited"
            try:
                answer = await client.get(url)
                if answer.status_code == 200:
                    return answer.text
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("no /metrics from the worker")
