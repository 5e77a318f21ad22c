"""What the governor tests share: a policy of one local action on a deployment, a fake
target that records overlapping runs, and a loop that runs due wakes on several engines
at once (as several workers would)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from helpers import Clock, PluginStub, alert

from heal.app import Heal
from heal.domain.actions import ActionStatus
from heal.domain.alerts import Alert
from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult
from heal.store import actions_repo, timeline_repo

POLICY = """
actions:
  restart:
    type: local
    command: [/bin/true, "{{ alert.labels.deployment }}"]
    idempotent: true
    target_key: "{{ alert.labels.namespace }}/{{ alert.labels.deployment }}"
    GOVERNORS
rules:
  - name: restart-crashing
    match: {alertname: PodCrashLooping}
    group_by: [alertname, pod]
    actions: [{action: restart}]
"""


def governed(governors: str, extra: str = "") -> str:
    """The policy with the action's governor keys (one YAML line each, indented) and
    top-level ``extra``."""
    return POLICY.replace("GOVERNORS", governors) + extra


def crash(pod: str, deployment: str = "checkout", namespace: str = "shop") -> Alert:
    """One alert per pod: each opens an incident of its own, all on one deployment."""
    return alert("PodCrashLooping", pod=pod, deployment=deployment, namespace=namespace)


class FakeTarget(PluginStub):
    """A local plugin that takes a little real time per run and records, per target, how
    many runs overlapped at most."""

    type = "local"

    def __init__(self, run_for: float = 0.02) -> None:
        self.run_for = run_for
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.runs: list[int] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def run_node(self, call: NodeCall) -> NodeResult:
        target = call.context["alert"]["labels"]["deployment"]
        self.running[target] += 1
        self.most[target] = max(self.most[target], self.running[target])
        self.runs.append(call.action_id)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.run_for)
            if self.fail:
                raise NodeFailed("exit code 1", permanent=True)
            return NodeResult(outputs={"exit_code": 0})
        finally:
            self.running[target] -= 1


def install(heals: list[Heal], plugin: FakeTarget) -> None:
    for heal in heals:
        heal.engine.plugins["local"] = plugin  # type: ignore[index]


async def rows(heal: Heal) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        found = []
        action_id = 1
        while (row := await actions_repo.load(connection, action_id)) is not None:
            found.append(row)
            action_id += 1
    return found


async def row(heal: Heal, action_id: int) -> dict[str, Any]:
    async with heal.db.read() as connection:
        found = await actions_repo.load(connection, action_id)
    assert found is not None
    return found


async def messages(heal: Heal, action_id: int) -> list[str]:
    async with heal.db.read() as connection:
        return [e["message"] for e in await timeline_repo.for_action(connection, action_id)]


async def run_all(heals: list[Heal], clock: Clock, max_rounds: int = 200) -> list[dict[str, Any]]:
    """Wake every due action at once, spread over the engines, until all have ended; the
    clock jumps to the next wake when nothing is due."""
    for _ in range(max_rounds):
        current = await rows(heals[0])
        live = [r for r in current if not ActionStatus(r["status"]).is_terminal]
        if not live:
            return current
        due = [r for r in live if r["next_wake_at"] <= clock.now]
        if not due:
            clock.now = min(r["next_wake_at"] for r in live)
            continue
        await asyncio.gather(
            *(heals[i % len(heals)].engine.wake(r["id"], r["version"]) for i, r in enumerate(due))
        )
    raise AssertionError("actions did not end")
