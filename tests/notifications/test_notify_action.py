"""The notify action type end to end: a policy pages people as a step (make_heal, ingest,
drive), through a webhook receiver that checks heal's signature (SQLite)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import HealFactory
from fakes.hooks import FakeReceiver
from fakes.server import serving
from helpers import Clock, alert, drive

from heal.policy.plugins import installed
from heal.store import timeline_repo

sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

KEY = "page-key"

POLICY = """
secrets:
  key: {env: HEAL_TEST_PAGE_KEY}
notifications:
  channels:
    pager: {type: webhook, url: "HOOK_URL/hook", secret: key}
    dead: {type: discord, url: "http://127.0.0.1:9/api/webhooks/1/x"}
actions:
  page-oncall:
    type: notify
    channel: CHANNEL
    title: "Paging for {{ incident.title }}"
    message: "{{ alert.labels.service }} is down ({{ alert.labels.severity }})"
    failed_retry: {is_enabled: true, max_retry_times: 1, retry_interval: 1}
rules:
  - name: checkout-down
    match: {alertname: CheckoutDown}
    actions: [{action: page-oncall}]
"""


async def _run(
    make_heal: HealFactory, clock: Clock, hook_url: str, channel: str = "pager"
) -> tuple[Any, dict[str, Any]]:
    heal = await make_heal(
        POLICY.replace("HOOK_URL", hook_url).replace("CHANNEL", channel),
        clock=clock,
        environ={"HEAL_TEST_PAGE_KEY": KEY},
    )
    await heal.ingest.ingest([alert()])
    return heal, await drive(heal, clock, 1)


def test_notify_is_an_installed_type() -> None:
    assert installed()["notify"].summary == "a message through a notifications channel"


@sqlite
async def test_the_step_sends_the_rendered_message(make_heal: HealFactory, clock: Clock) -> None:
    # The receiver's clock is real time: the step signs with the time of its send.
    hook = FakeReceiver(KEY)
    async with serving(hook.app()) as hook_url:
        heal, action = await _run(make_heal, clock, hook_url)
    assert action["status"] == "success"
    assert action["outputs"]["notified"] == "pager"
    (call,) = hook.calls
    assert call.method == "notify"
    assert call.payload["title"] == "Paging for CheckoutDown"
    assert call.payload["text"] == "checkout is down (critical)"
    assert call.payload["action"] == {"id": 1, "name": "page-oncall"}
    async with heal.db.read() as connection:
        entries = await timeline_repo.for_incident(connection, 1)
    assert any("notify pager" in e["message"] for e in entries)


@sqlite
async def test_a_refusing_channel_fails_the_step_for_good(
    make_heal: HealFactory, clock: Clock
) -> None:
    hook = FakeReceiver("the-receivers-other-key")
    async with serving(hook.app()) as hook_url:
        _, action = await _run(make_heal, clock, hook_url)
    assert action["status"] == "failure"
    assert "HTTP 401" in action["message"]
    assert hook.rejected == 1  # permanent: not retried


@sqlite
async def test_an_unreachable_channel_is_retried_then_fails(
    make_heal: HealFactory, clock: Clock
) -> None:
    _, action = await _run(make_heal, clock, "http://unused.invalid", channel="dead")
    assert action["status"] == "failure"
    assert "discord dead: ConnectError" in action["message"]
    assert action["attempt"] == 1  # the one retry failed_retry allows was made
