"""A fallback passes the same governors as an action an alert starts."""

from __future__ import annotations

import pytest
from conftest import HealFactory
from governed import crash, messages, rows, run_all
from helpers import Clock, PluginStub

from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult

POLICY = """
actions:
  restart:
    type: local
    command: [/bin/false]
    idempotent: true
    fallback: page
  page:
    type: local
    command: [/bin/true]
    idempotent: true
    limits: [{max: 1, per: 3600, over: block}]
rules:
  - name: restart-crashing
    match: {alertname: PodCrashLooping}
    group_by: [alertname, pod]
    actions: [{action: restart}]
"""


class RestartFails(PluginStub):
    type = "local"

    async def run_node(self, call: NodeCall) -> NodeResult:
        if call.context["action"]["name"] == "restart":
            raise NodeFailed("exit code 1", permanent=True)
        return NodeResult(outputs={"exit_code": 0})


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_fallback_past_its_rate_limit_is_blocked(
    make_heal: HealFactory, clock: Clock, backend: tuple[str, str]
) -> None:
    heal = await make_heal(POLICY, clock=clock)
    heal.engine.plugins["local"] = RestartFails()  # type: ignore[index]
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])

    ended = await run_all([heal], clock)

    by_name = sorted((r["action_name"], r["status"]) for r in ended)
    assert by_name == [
        ("page", "blocked"),
        ("page", "success"),
        ("restart", "failure"),
        ("restart", "failure"),
    ]
    blocked = next(r for r in ended if r["status"] == "blocked")
    assert blocked["message"].startswith("blocked: rate limit of 'page' reached: 1 in the last")
    assert any("action not run: blocked" in m for m in await messages(heal, blocked["id"]))
    assert len(await rows(heal)) == 4
