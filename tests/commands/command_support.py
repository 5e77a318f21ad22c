"""Running a command action through heal: a policy, an alert, wakes to the end."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import HealFactory
from helpers import Clock, alert, drive

from heal.app import Heal
from heal.domain.alerts import Alert
from heal.store import timeline_repo

RULE = """
rules:
  - name: checkout-down
    match: {alertname: CheckoutDown}
    skip_delay: 0
    actions: [ACTIONS]
"""


def policy(actions: str, *, extra: str = "", run: tuple[str, ...] = ("run-it",)) -> str:
    refs = ", ".join(f"{{action: {name}}}" for name in run)
    return f"actions:\n{actions}\n{extra}\n" + RULE.replace("ACTIONS", refs)


async def start(
    make_heal: HealFactory,
    clock: Clock,
    text: str,
    *,
    environ: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Heal:
    heal: Heal = await make_heal(text, clock=clock, environ=environ)
    with_labels: Callable[..., Alert] = alert  # the labels are the alert's own
    report = await heal.ingest.ingest([with_labels(**(labels or {}))])
    assert report.actions_created >= 1
    return heal


async def run(
    make_heal: HealFactory,
    clock: Clock,
    text: str,
    *,
    environ: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[Heal, dict[str, Any]]:
    heal = await start(make_heal, clock, text, environ=environ, labels=labels)
    return heal, await drive(heal, clock, 1)


async def timeline(heal: Heal, action_id: int = 1) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return await timeline_repo.for_action(connection, action_id)


def everything_stored(row: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    """The action's row and its timeline as one text, to look for what must not be there."""
    return json.dumps([row, entries], default=str)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its entry in the process table.
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:  # it went between the two looks (ENOENT, or ESRCH while reading)
        return False


def running(argv: list[str]) -> list[int]:
    """The pids of the processes whose command line is exactly ``argv``."""
    wanted = "\0".join(argv) + "\0"
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_text(errors="replace") == wanted:
                found.append(int(cmdline.parent.name))
        except OSError:  # it ended meanwhile
            continue
    return found


def none_running_soon(argv: list[str], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not running(argv):
            return True
        time.sleep(0.05)
    return False


def gone_soon(pid: int, within: float = 10.0) -> bool:
    """True once the process has gone (a kill is delivered asynchronously)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


async def wait_for_file(path: Path, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} was not written within {within} s")
