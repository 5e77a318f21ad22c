"""What the engine guarantees every action type: a step that is not idempotent is never
run twice, a permanent refusal is not retried, polls back off, a cancel reaches the
plugin. The plugins here stand in for a type's real one (each type has its own tests)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import HealFactory
from helpers import Clock, PluginStub, alert, drive, heal_dies_before_commit, policy_text

from heal.demo.itsm import FakeITSM
from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult
from heal.store import actions_repo, timeline_repo

pytestmark = pytest.mark.usefixtures("backend")

POLICY = """
actions:
  run-it:
    type: local
    command: [/bin/true, "{{ alert.labels.service }}"]
    idempotent: IDEMPOTENT
    failed_retry: {is_enabled: true, max_retry_times: 3, retry_interval: 1}
  st2:
    type: stackstorm
    base_url: http://st2.invalid/api/v1
    auth: {type: api_key, secret: key}
    default_action: core.local
    poll_interval: 2
secrets:
  key: {env: HEAL_TEST_ITSM_TOKEN}
rules:
  - name: checkout-down
    match: {alertname: CheckoutDown}
    actions: [{action: ACTION}]
"""


class Recorder(PluginStub):
    def __init__(self, kind: str, clock: Clock) -> None:
        self.type = kind
        self.clock = clock
        self.calls: list[tuple[str, Any]] = []
        self.fail: NodeFailed | None = None
        self.polls_until_done = 0
        self.cancelled: list[str] = []

    async def run_node(self, call: NodeCall) -> NodeResult:
        self.calls.append((call.node.function, self.clock.now))
        if self.fail is not None:
            raise self.fail
        if call.node.function == "follow":
            return NodeResult(outputs={"done": call.poll >= self.polls_until_done})
        return NodeResult(outputs={"exit_code": 0})

    async def cancel(self, call: NodeCall) -> str | None:
        self.cancelled.append(call.node.function)
        return f"execution of {call.node.function} cancelled"


async def _start(
    make_heal: HealFactory, clock: Clock, action: str, idempotent: bool = False
) -> tuple[Any, Recorder]:
    text = POLICY.replace("IDEMPOTENT", str(idempotent).lower()).replace("ACTION", action)
    heal = await make_heal(text, clock=clock)
    plugin = Recorder("local" if action == "run-it" else "stackstorm", clock)
    heal.engine.plugins[plugin.type] = plugin
    report = await heal.ingest.ingest([alert()])
    assert report.actions_created == 1
    return heal, plugin


async def _row(heal: Any, action_id: int = 1) -> dict[str, Any]:
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, action_id)
    assert row is not None
    return row


async def _crash_after_the_run(heal: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step ran, then heal died before it stored the outcome."""
    with heal_dies_before_commit(heal, monkeypatch):
        await heal.engine.wake(1, 0)


async def test_a_step_that_is_not_idempotent_is_not_run_again_after_a_crash(
    make_heal: HealFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    heal, plugin = await _start(make_heal, clock, "run-it", idempotent=False)
    await _crash_after_the_run(heal, monkeypatch)
    assert (await _row(heal))["running_key"] == "heal-1-run-a0-p0"

    row = await drive(heal, clock, 1)  # the restarted heal wakes it again

    assert len(plugin.calls) == 1
    assert (row["status"], row["failure_type"]) == ("failure", "outcome_unknown")
    assert "whether it ran is unknown" in row["message"]
    assert row["running_key"] is None
    async with heal.db.read() as connection:
        messages = [e["message"] for e in await timeline_repo.for_action(connection, 1)]
    assert any("it is not idempotent, so it was not run again" in m for m in messages)


async def test_an_idempotent_step_runs_again_after_a_crash(
    make_heal: HealFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    heal, plugin = await _start(make_heal, clock, "run-it", idempotent=True)
    await _crash_after_the_run(heal, monkeypatch)
    row = await drive(heal, clock, 1)
    assert len(plugin.calls) == 2
    assert row["status"] == "success"


async def test_a_step_that_is_not_idempotent_runs_once_when_nothing_goes_wrong(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, plugin = await _start(make_heal, clock, "run-it", idempotent=False)
    row = await drive(heal, clock, 1)
    assert (row["status"], row["outputs"]) == ("success", {"exit_code": 0})
    assert (len(plugin.calls), row["running_key"]) == (1, None)


async def test_a_permanent_refusal_fails_at_once_whatever_failed_retry_says(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, plugin = await _start(make_heal, clock, "run-it")
    plugin.fail = NodeFailed("host key not in known_hosts", permanent=True, outputs={"host": "h"})
    row = await drive(heal, clock, 1)
    assert len(plugin.calls) == 1
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"] == "local command: host key not in known_hosts"
    assert row["outputs"] == {"host": "h"}  # what the step learned is kept


async def test_a_refusal_that_is_not_permanent_is_retried(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, plugin = await _start(make_heal, clock, "run-it")
    plugin.fail = NodeFailed("exit code 1")
    row = await drive(heal, clock, 1)
    assert len(plugin.calls) == 4  # the run and 3 retries
    assert row["status"] == "failure"


async def test_polls_back_off_from_the_interval_to_their_ceiling(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, plugin = await _start(make_heal, clock, "st2")
    plugin.polls_until_done = 5
    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    times = [at for function, at in plugin.calls if function == "follow"]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps == [2, 4, 8, 15, 15]  # poll_interval 2, doubling, at most 15 s


async def test_cancelling_tells_the_plugin_of_the_current_step(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, plugin = await _start(make_heal, clock, "st2")
    plugin.polls_until_done = 100
    await heal.engine.wake(1, 0)  # execute
    await heal.engine.wake(1, 1)  # first look: still running
    result = await heal.engine.cancel(1, who="tester")
    assert result.cancelled
    assert plugin.cancelled == ["follow"]
    async with heal.db.read() as connection:
        messages = [e["message"] for e in await timeline_repo.for_action(connection, 1)]
    assert messages[-1] == "execution of follow cancelled"


@pytest.mark.usefixtures("itsm")
async def test_an_http_node_marked_not_idempotent_is_not_sent_twice(
    make_heal: HealFactory,
    clock: Clock,
    itsm: tuple[FakeITSM, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = itsm
    text = policy_text(url).replace(
        "        name: Create ticket\n", "        name: Create ticket\n        idempotent: false\n"
    )
    heal = await make_heal(text, clock=clock)
    await heal.ingest.ingest([alert()])
    await _crash_after_the_run(heal, monkeypatch)
    row = await drive(heal, clock, 1)
    assert (row["status"], row["failure_type"]) == ("failure", "outcome_unknown")
    assert len(fake.requests_to("/create_ticket/")) == 1
