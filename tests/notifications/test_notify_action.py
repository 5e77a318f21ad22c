"""The notify action type end to end: a policy pages people as a step (make_heal, ingest,
drive). The step queues its message in the durable outbox and succeeds; the dispatcher
delivers it to a webhook receiver that checks heal's signature, with the outbox's
retries and a delivery record, and a refusal never changes the action's outcome."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import HealFactory
from fakes.hooks import FakeReceiver
from fakes.server import serving
from helpers import Clock, alert, drive

from heal.app import Heal
from heal.engine.interfaces import NodeCall
from heal.policy.plugins import installed
from heal.store import notifications_repo, timeline_repo

sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
BOTH = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

KEY = "page-key"

POLICY = """
secrets:
  key: {env: HEAL_TEST_PAGE_KEY}
notifications:
  channels:
    pager: {type: webhook, url: "HOOK_URL/hook", secret: key, min_interval: 0}
    dead: {type: discord, url: "http://127.0.0.1:9/api/webhooks/1/x", min_interval: 0}
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
) -> tuple[Heal, dict[str, Any]]:
    heal: Heal = await make_heal(
        POLICY.replace("HOOK_URL", hook_url).replace("CHANNEL", channel),
        clock=clock,
        environ={"HEAL_TEST_PAGE_KEY": KEY},
    )
    heal.chat.clock = clock
    assert heal.chat.routed is not None
    heal.chat.routed.clock = clock
    await heal.ingest.ingest([alert()])
    return heal, await drive(heal, clock, 1)


async def _records(heal: Heal) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return await notifications_repo.listing(connection, incident_id=1)


def test_notify_is_an_installed_type() -> None:
    assert installed()["notify"].summary == "a message through a notifications channel"


@BOTH
async def test_the_step_queues_the_message_and_the_outbox_delivers_it(
    make_heal: HealFactory, clock: Clock
) -> None:
    hook = FakeReceiver(KEY, now=clock.now.timestamp())
    async with serving(hook.app()) as hook_url:
        heal, action = await _run(make_heal, clock, hook_url)
        assert action["status"] == "success"
        assert hook.calls == []  # queued by the step, sent by the dispatcher
        [record] = await _records(heal)
        assert action["outputs"] == {
            "notified": "pager",
            "delivery_id": record["id"],
            "delivery": "queued",
        }
        assert (record["channel"], record["event"], record["status"]) == (
            "pager",
            "notify",
            "pending",
        )
        await heal.chat.run_once()
    (call,) = hook.calls
    assert call.method == "notify"
    assert call.payload["id"] == record["id"]
    assert call.payload["title"] == "Paging for CheckoutDown"
    assert call.payload["text"] == "checkout is down (critical)"
    assert call.payload["action"] == {"id": 1, "name": "page-oncall", "rule": "checkout-down"}
    [record] = await _records(heal)
    assert record["status"] == "sent"
    async with heal.db.read() as connection:
        entries = await timeline_repo.for_incident(connection, 1)
    assert any("notify pager" in e["message"] for e in entries)


@sqlite
async def test_a_refusing_channel_fails_the_delivery_not_the_action(
    make_heal: HealFactory, clock: Clock
) -> None:
    hook = FakeReceiver("the-receivers-other-key", now=clock.now.timestamp())
    async with serving(hook.app()) as hook_url:
        heal, action = await _run(make_heal, clock, hook_url)
        await heal.chat.run_once()
        clock.advance(600)
        await heal.chat.run_once()
    assert action["status"] == "success"
    assert hook.rejected == 1  # permanent: not retried
    [record] = await _records(heal)
    assert record["status"] == "failed"
    assert "HTTP 401" in record["error"]


@sqlite
async def test_an_unreachable_channel_is_retried_by_the_outbox(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal, action = await _run(make_heal, clock, "http://unused.invalid", channel="dead")
    assert action["status"] == "success"
    assert action["attempt"] == 0  # the step did not fail: nothing for failed_retry
    await heal.chat.run_once()
    [record] = await _records(heal)
    assert (record["status"], record["attempts"]) == ("pending", 1)
    assert "discord dead: ConnectError" in record["error"]
    assert record["next_attempt_at"] == clock.now + timedelta(seconds=2)
    assert await heal.chat.run_once() == 0  # not due before its backoff


@BOTH
async def test_a_step_run_again_with_its_key_queues_the_message_once(
    make_heal: HealFactory, clock: Clock
) -> None:
    hook = FakeReceiver(KEY, now=clock.now.timestamp())
    async with serving(hook.app()) as hook_url:
        heal, action = await _run(make_heal, clock, hook_url)
        policy = heal.ruleset.policy
        config = policy.actions["page-oncall"]
        plugin = heal.engine.plugins["notify"]
        context = {
            "incident": {"id": 1, "title": "CheckoutDown"},
            "alert": {"labels": {"service": "checkout", "severity": "critical"}},
            "action": {"id": 1, "name": "page-oncall", "rule": "checkout-down"},
        }
        call = NodeCall(1, config.steps[0], context, {}, "heal-1-replayed-a0-p0", 10, config)
        first = await plugin.run_node(call)
        again = await plugin.run_node(call)  # heal crashed before recording the first run
        assert first.outputs["delivery_id"] == again.outputs["delivery_id"]
        assert first.outputs["delivery_id"] != action["outputs"]["delivery_id"]
        assert len(await _records(heal)) == 2  # the action's own message, and this one
        await heal.chat.run_once()
    assert [c.payload["id"] for c in hook.calls] == sorted(
        [action["outputs"]["delivery_id"], first.outputs["delivery_id"]]
    )


@sqlite
async def test_a_chat_not_configured_fails_the_step_for_good(
    make_heal: HealFactory, clock: Clock
) -> None:
    _, action = await _run(make_heal, clock, "http://unused.invalid", channel="telegram")
    assert action["status"] == "failure"
    assert "channel telegram is not configured (settings)" in action["message"]
    assert action["attempt"] == 0  # permanent: failed_retry does not apply
