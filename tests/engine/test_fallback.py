"""``fallback: <action>``: an action that fails for good starts its fallback, in the same
commit, as a new action of the same incident and rule, through the approval gate; not
after a cancel or an unknown outcome; never twice in one chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HealFactory
from fakes.server import serving
from fakes.st2 import FakeSt2, Plan, create_app
from helpers import AUTH, Clock, PluginStub, drive, heal_dies_before_commit

from heal.api.app import create_app as create_api
from heal.domain.access import Role
from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.domain.approvals import Signer
from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult
from heal.store import actions_repo, approvals_repo, incidents_repo, timeline_repo
from heal.store import verifications_repo as verify_repo

ST2_POLICY = """
settings:
  st2_url: __URL__
secrets:
  st2_key: {env: ST2_API_KEY}
actions:
  st2-remediate:
    type: stackstorm
    base_url: "{{ settings.st2_url }}"
    auth: {type: api_key, secret: st2_key}
    match_on: "{{ alert.annotations.description }}"
    default_action: network.remediation.generic_fix
    parameters: {host: "{{ alert.labels.instance }}"}
    poll_interval: 2
    fallback: restart-agent
  restart-agent:
    type: local
    command: [/usr/bin/systemctl, restart, "agent@{{ alert.labels.instance }}"]
    idempotent: true
    AGENT_EXTRA
rules:
  - name: network
    match: {alertname: LinkDown}
    actions: [{action: st2-remediate}]
"""

LOOP_POLICY = """
actions:
  a:
    type: local
    command: [/bin/a]
    idempotent: IDEMPOTENT
    failed_retry: {is_enabled: true, max_retry_times: 2, retry_interval: 1}
    fallback: b
  b:
    type: local
    command: [/bin/b]
    idempotent: true
    fallback: a
rules:
  - name: network
    match: {alertname: LinkDown}
    actions: [{action: a}]
"""


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """SQLite, unless a test asks for PostgreSQL too (``indirect`` parametrisation)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/heal.db", "embedded"
    return request.getfixturevalue("postgres_url"), "embedded"


@pytest.fixture
async def st2() -> AsyncIterator[tuple[FakeSt2, str]]:
    fake = FakeSt2()
    # the st2 action always fails: st2-remediate needs its fallback
    fake.plans["network.remediation.generic_fix"] = Plan(
        ["running", "failed"], {"stderr": "device unreachable", "exit_code": 1}
    )
    async with serving(create_app(fake)) as url:
        yield fake, f"{url}/api/v1"


class LocalStub(PluginStub):
    """Stands in for the local plugin: records who ran, fails the actions named."""

    type = "local"

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.failing: set[str] = set()

    async def run_node(self, call: NodeCall) -> NodeResult:
        name = call.context["action"]["name"]
        self.runs.append((name, call.context["alert"]["labels"]))
        if name in self.failing:
            raise NodeFailed(f"{name}: exit code 1")
        return NodeResult(outputs={"exit_code": 0})


def link_alert() -> Alert:
    labels = {"alertname": "LinkDown", "severity": "critical", "instance": "sw1:9100"}
    return Alert(
        fingerprint=fingerprint_of(labels),
        status=AlertStatus.FIRING,
        labels=labels,
        annotations={"description": "interface down"},
        starts_at=datetime(2026, 1, 1, 11, 59, tzinfo=UTC),
    )


async def start(
    make_heal: HealFactory, clock: Clock, policy: str, **environ: str
) -> tuple[Any, LocalStub]:
    heal = await make_heal(policy, clock=clock, environ=environ)
    local = LocalStub()
    heal.engine.plugins["local"] = local
    report = await heal.ingest.ingest([link_alert()])
    assert report.actions_created == 1
    return heal, local


def st2_policy(url: str, agent_extra: str = "") -> str:
    return ST2_POLICY.replace("__URL__", url).replace("AGENT_EXTRA", agent_extra)


async def actions_of(heal: Any, incident_id: int = 1) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return list(await incidents_repo.actions_of(connection, incident_id))


async def incident_timeline(heal: Any) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return list(await timeline_repo.for_incident(connection, 1))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_failed_st2_action_runs_its_fallback_for_the_same_incident(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    _, url = st2
    heal, local = await start(make_heal, clock, st2_policy(url), ST2_API_KEY="st2-key-123")

    failed = await drive(heal, clock, 1)

    assert (failed["status"], failed["failure_type"]) == ("failure", "execute_failure")
    assert "failed: device unreachable" in failed["message"]
    first, fallback = await actions_of(heal)
    assert first["id"] == 1
    assert (fallback["action_name"], fallback["rule"], fallback["status"]) == (
        "restart-agent",
        "network",
        "received",
    )
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, fallback["id"])
    assert row is not None
    assert row["context"]["alert"] == failed["context"]["alert"]  # the failed one's snapshot
    assert row["context"]["fallback"] == {"of": 1, "chain": ["st2-remediate", "restart-agent"]}
    entries = await incident_timeline(heal)
    said = [(e["kind"], e["action_id"], e["message"]) for e in entries]
    assert ("action.fallback", 1, "st2-remediate failed; running fallback restart-agent") in said
    assert (
        "action.created",
        fallback["id"],
        "action 'restart-agent' created by rule 'network' as the fallback of 'st2-remediate' (#1)",
    ) in said
    # after the failure, in the same commit
    kinds = [e["kind"] for e in entries]
    failure = "action 'st2-remediate' failure"
    ended = max(i for i, e in enumerate(entries) if e["message"].startswith(failure))
    assert kinds.index("action.fallback") > ended

    app = create_api(heal, manage_lifecycle=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://heal", headers=AUTH
    ) as client:
        incident = (await client.get("/api/v1/incidents/1")).json()
    assert [(a["action_name"], a["status"]) for a in incident["actions"]] == [
        ("st2-remediate", "failure"),
        ("restart-agent", "received"),
    ]

    done = await drive(heal, clock, fallback["id"])
    assert done["status"] == "success"
    assert local.runs == [("restart-agent", link_alert().labels)]


async def test_cancelling_an_action_does_not_run_its_fallback(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    fake.plans["network.remediation.generic_fix"] = Plan(["running"])
    heal, local = await start(make_heal, clock, st2_policy(url), ST2_API_KEY="st2-key-123")
    await heal.engine.wake(1, 0)
    assert (await heal.engine.cancel(1, who="alice")).cancelled
    assert [a["action_name"] for a in await actions_of(heal)] == ["st2-remediate"]
    messages = [e["message"] for e in await incident_timeline(heal)]
    assert "st2-remediate failed; fallback restart-agent not run: it was cancelled" in messages
    assert local.runs == []


async def test_an_unknown_outcome_does_not_run_the_fallback(
    make_heal: HealFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    heal, local = await start(make_heal, clock, LOOP_POLICY.replace("IDEMPOTENT", "false"))

    with heal_dies_before_commit(heal, monkeypatch):
        await heal.engine.wake(1, 0)
    row = await drive(heal, clock, 1)

    assert (row["status"], row["failure_type"]) == ("failure", "outcome_unknown")
    assert [a["action_name"] for a in await actions_of(heal)] == ["a"]
    messages = [e["message"] for e in await incident_timeline(heal)]
    assert (
        "a failed; fallback b not run: whether it ran is unknown; a person must look first"
        in messages
    )
    assert [name for name, _ in local.runs] == ["a"]


async def test_a_fallback_chain_never_runs_an_action_twice(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, local = await start(make_heal, clock, LOOP_POLICY.replace("IDEMPOTENT", "true"))
    local.failing = {"a", "b"}

    assert (await drive(heal, clock, 1))["status"] == "failure"
    assert [name for name, _ in local.runs] == ["a", "a", "a"]  # its retries first
    [_, b] = await actions_of(heal)
    assert (await drive(heal, clock, b["id"]))["status"] == "failure"

    assert [a["action_name"] for a in await actions_of(heal)] == ["a", "b"]
    messages = [e["message"] for e in await incident_timeline(heal)]
    assert "a failed; running fallback b" in messages
    assert "b failed; fallback a not run: it already ran in this chain (a -> b -> a)" in messages
    assert [name for name, _ in local.runs] == ["a", "a", "a", "b"]


async def test_a_fallback_waits_for_approval_like_any_action(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    _, url = st2
    policy = st2_policy(url, "needs_approval: true")
    heal, local = await start(make_heal, clock, policy, ST2_API_KEY="st2-key-123")
    heal.approvals.clock = clock

    await drive(heal, clock, 1)

    [_, fallback] = await actions_of(heal)
    assert fallback["status"] == "waiting"
    async with heal.db.read() as connection:
        approval = await approvals_repo.for_action(connection, fallback["id"])
    assert approval is not None
    assert approval["status"] == "pending"
    assert local.runs == []

    signer = Signer("bob", Role.APPROVER, frozenset({"sre"}))
    result = await heal.approvals.sign(approval["id"], signer, approve=True)
    assert result.action_status.value == "received"
    assert (await drive(heal, clock, fallback["id"]))["status"] == "success"
    assert [name for name, _ in local.runs] == ["restart-agent"]


async def test_a_fallback_is_verified_as_its_rule_says(
    make_heal: HealFactory, clock: Clock
) -> None:
    policy = LOOP_POLICY.replace("IDEMPOTENT", "true").replace(
        "    actions: [{action: a}]",
        "    verify: {within: 300, quiet_for: 60}\n    actions: [{action: a}]",
    )
    heal, local = await start(make_heal, clock, policy)
    local.failing = {"a"}
    await drive(heal, clock, 1)
    fallback = (await actions_of(heal))[1]
    assert fallback["action_name"] == "b"
    row = await drive(heal, clock, fallback["id"])
    assert row["status"] == "success"
    assert row["config"]["verify"] == {"within": 300, "quiet_for": 60, "on_ineffective": "none"}
    async with heal.db.read() as connection:
        watched = await verify_repo.for_action(connection, fallback["id"])
    assert watched is not None
    assert watched["outcome"] == "pending"
