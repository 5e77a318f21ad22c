"""Routed notifications end to end: an alert opens an incident, an action runs, and each
event reaches the channels its route names, through the durable outbox, with one
delivery record per message and channel (SQLite; the fakes answer as the real APIs do)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from conftest import HealFactory
from fakes.hooks import FakeDiscord, FakeReceiver, FakeTeams
from fakes.server import serving
from helpers import Clock, PluginStub, alert, drive

from heal.app import Heal
from heal.engine.interfaces import NodeCall, NodeResult
from heal.store import notifications_repo

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
# The outbox's claim, JSON payloads and collapse on PostgreSQL too (run under the lock).
BOTH = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

HOOK_KEY = "s3cret-hook-key"

POLICY = """
secrets:
  hook_key: {env: HEAL_TEST_HOOK_KEY}
  discord_url: {env: HEAL_TEST_DISCORD_URL}
notifications:
  collapse_after: COLLAPSE
  channels:
    ops-webhook: {type: webhook, url: "WEBHOOK_URL/hook", secret: hook_key, min_interval: 0}
    team-discord: {type: discord, url_secret: discord_url, min_interval: 0}
    team-teams:
      type: teams
      url: "TEAMS_URL/webhookb2/abc@def/IncomingWebhook/x/y"
      min_interval: 0
  routes:
    - match: {service: checkout}
      events: [incident_opened, action_started, action_succeeded, action_failed]
      channels: [ops-webhook, team-discord]
    - match: {service: checkout}
      events: [incident_opened, incident_resolved]
      channels: [team-teams, ops-webhook]
    - events: [incident_resolved]
      channels: [slack]  # not configured in these tests
    - match: {alertname: BillingDown}
      events: [incident_opened]
      channels: [team-teams]
actions:
  run-it:
    type: local
    command: [/bin/true]
rules:
  - name: checkout-down
    match: {alertname: CheckoutDown}
    group_by: [alertname, service]
    actions: [{action: run-it}]
"""


class Runs(PluginStub):
    type = "local"

    def __init__(self) -> None:
        self.calls = 0

    async def run_node(self, call: NodeCall) -> NodeResult:
        self.calls += 1
        return NodeResult(outputs={"exit_code": 0})


@dataclass
class World:
    heal: Heal
    clock: Clock
    hook: FakeReceiver
    discord: FakeDiscord
    teams: FakeTeams
    plugin: Runs

    async def dispatch(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            await self.heal.chat.run_once()

    async def records(self, **where: Any) -> list[dict[str, Any]]:
        async with self.heal.db.read() as connection:
            rows = await notifications_repo.listing(connection, limit=500, **where)
        return sorted(rows, key=lambda r: r["id"])


@contextlib.asynccontextmanager
async def world(
    make_heal: HealFactory, clock: Clock, *, collapse: int = 50, secret: str = HOOK_KEY
) -> AsyncIterator[World]:
    hook, discord, teams = (
        FakeReceiver(secret, now=clock.now.timestamp()),
        FakeDiscord(),
        FakeTeams(),
    )
    async with (
        serving(hook.app()) as hook_url,
        serving(discord.app()) as discord_url,
        serving(teams.app()) as teams_url,
    ):
        text = (
            POLICY.replace("WEBHOOK_URL", hook_url)
            .replace("TEAMS_URL", teams_url)
            .replace("COLLAPSE", str(collapse))
        )
        heal = await make_heal(
            text,
            clock=clock,
            environ={
                "HEAL_TEST_HOOK_KEY": HOOK_KEY,
                "HEAL_TEST_DISCORD_URL": f"{discord_url}/api/webhooks/1/good-token",
            },
        )
        heal.chat.clock = clock
        assert heal.chat.routed is not None
        heal.chat.routed.clock = clock
        plugin = Runs()
        heal.engine.plugins["local"] = plugin
        yield World(heal, clock, hook, discord, teams, plugin)


@BOTH
async def test_each_event_reaches_the_channels_its_routes_name(
    make_heal: HealFactory, clock: Clock
) -> None:
    async with world(make_heal, clock) as w:
        await w.heal.ingest.ingest([alert()])
        action = await drive(w.heal, clock, 1)
        assert action["status"] == "success"
        await w.dispatch()

        events = [(c.method, c.payload["incident"]["id"]) for c in w.hook.calls]
        # Opened is routed twice to the webhook (two routes) but sent once.
        assert events == [
            ("incident_opened", 1),
            ("action_started", 1),
            ("action_succeeded", 1),
        ]
        assert w.hook.calls[0].payload["incident"]["labels"]["service"] == "checkout"
        assert w.hook.calls[2].payload["action"]["name"] == "run-it"
        discord_said = [c.payload["content"] for c in w.discord.calls]
        assert len(discord_said) == 3
        assert "CheckoutDown" in discord_said[0]
        assert "succeeded" in discord_said[2]
        assert [c.payload["title"] for c in w.teams.calls] == [
            "Incident opened: #1 CheckoutDown (service=checkout)"
        ]

        records = await w.records()
        assert [(r["channel"], r["event"], r["status"]) for r in records] == [
            ("ops-webhook", "incident_opened", "sent"),
            ("team-discord", "incident_opened", "sent"),
            ("team-teams", "incident_opened", "sent"),
            ("ops-webhook", "action_started", "sent"),
            ("team-discord", "action_started", "sent"),
            ("ops-webhook", "action_succeeded", "sent"),
            ("team-discord", "action_succeeded", "sent"),
        ]

        await w.heal.ingest.ingest([alert(status="resolved")])
        await w.dispatch()
        assert [c.method for c in w.hook.calls][-1] == "incident_resolved"
        assert (
            w.teams.calls[-1].payload["title"]
            == "Incident resolved: #1 CheckoutDown (service=checkout)"
        )


@SQLITE
async def test_an_incident_no_route_matches_writes_nothing(
    make_heal: HealFactory, clock: Clock
) -> None:
    async with world(make_heal, clock) as w:
        await w.heal.ingest.ingest([alert("DiskFull")])
        assert await w.records() == []
        await w.heal.ingest.ingest([alert("BillingDown")])
        assert [(r["channel"], r["event"]) for r in await w.records()] == [
            ("team-teams", "incident_opened")
        ]


@SQLITE
async def test_discord_429_waits_as_told_then_delivers(
    make_heal: HealFactory, clock: Clock
) -> None:
    async with world(make_heal, clock) as w:
        w.discord.rate_limited = 1
        w.discord.retry_after = 30.0
        await w.heal.ingest.ingest([alert()])
        await w.dispatch()
        (record,) = await w.records(channel="team-discord")
        assert record["status"] == "pending"
        assert record["attempts"] == 1
        assert "rate limited" in record["error"]
        assert record["next_attempt_at"] >= clock.now + timedelta(seconds=30)

        clock.now += timedelta(seconds=10)
        await w.dispatch()
        assert w.discord.calls == []  # not before the time Discord named
        clock.now += timedelta(seconds=25)
        await w.dispatch()
        assert len(w.discord.calls) == 1
        (record,) = await w.records(channel="team-discord")
        assert record["status"] == "sent"


@SQLITE
async def test_teams_throttling_is_retried(make_heal: HealFactory, clock: Clock) -> None:
    async with world(make_heal, clock) as w:
        w.teams.throttled = 1
        await w.heal.ingest.ingest([alert()])
        await w.dispatch()
        (record,) = await w.records(channel="team-teams")
        assert (record["status"], record["attempts"]) == ("pending", 1)
        clock.now += timedelta(minutes=1)
        await w.dispatch()
        (record,) = await w.records(channel="team-teams")
        assert record["status"] == "sent"
        assert len(w.teams.calls) == 1


@SQLITE
async def test_a_refused_signature_is_a_permanent_failure_and_the_action_still_succeeds(
    make_heal: HealFactory, clock: Clock
) -> None:
    # The receiver knows another key: every body heal signs is refused with 401.
    async with world(make_heal, clock, secret="the-receivers-other-key") as w:
        await w.heal.ingest.ingest([alert()])
        action = await drive(w.heal, clock, 1)
        await w.dispatch()
        clock.now += timedelta(hours=1)
        w.hook.now = clock.now.timestamp()
        await w.dispatch()

        assert action["status"] == "success"
        assert w.plugin.calls == 1
        records = await w.records(channel="ops-webhook")
        assert {r["status"] for r in records} == {"failed"}
        assert all(r["attempts"] == 0 and "HTTP 401" in r["error"] for r in records)
        assert w.hook.rejected == 3  # once each, never again
        assert HOOK_KEY not in " ".join(r["error"] for r in records)
        # The other channels are not held up by the one that refuses.
        assert {r["status"] for r in await w.records(channel="team-discord")} == {"sent"}


@SQLITE
async def test_an_old_signature_is_refused_by_the_documented_check(
    make_heal: HealFactory, clock: Clock
) -> None:
    async with world(make_heal, clock) as w:
        w.hook.now = clock.now.timestamp() + 3600  # a replay an hour later
        await w.heal.ingest.ingest([alert()])
        await w.dispatch()
        assert w.hook.calls == []
        assert w.hook.rejected == 1


@SQLITE
async def test_a_webhook_that_keeps_failing_gives_up_after_max_attempts(
    make_heal: HealFactory, clock: Clock
) -> None:
    async with world(make_heal, clock) as w:
        w.hook.fail_with = 503
        w.heal.chat.routed.max_attempts = 3  # type: ignore[union-attr]
        await w.heal.ingest.ingest([alert()])
        for _ in range(5):
            w.hook.now = clock.now.timestamp()  # the receiver's clock keeps up with heal's
            await w.dispatch()
            clock.now += timedelta(minutes=10)
        (record,) = await w.records(channel="ops-webhook")
        assert record["status"] == "failed"
        assert record["attempts"] == 2  # two retries counted, the third try gave up
        assert "HTTP 503" in record["error"]


@BOTH
async def test_a_storm_for_one_incident_goes_out_as_one_update(
    make_heal: HealFactory, clock: Clock
) -> None:
    async with world(make_heal, clock, collapse=3) as w:
        await w.heal.ingest.ingest([alert()])
        await drive(w.heal, clock, 1)  # opened, started, succeeded: three for the webhook
        await w.dispatch()

        (message,) = w.hook.calls
        assert message.payload["text"].startswith("3 updates on incident #1:")
        assert [c["event"] for c in message.payload["collapsed"]] == [
            "action_started",
            "action_succeeded",
        ]
        statuses = [r["status"] for r in await w.records(channel="ops-webhook")]
        assert statuses == ["sent", "collapsed", "collapsed"]


@SQLITE
async def test_a_channels_rate_limit_postpones_without_counting_an_attempt(
    make_heal: HealFactory, clock: Clock
) -> None:
    text_limit = POLICY.replace(
        "secret: hook_key, min_interval: 0", "secret: hook_key, min_interval: 60"
    )
    hook = FakeReceiver(HOOK_KEY, now=clock.now.timestamp())
    async with serving(hook.app()) as hook_url:
        heal = await make_heal(
            text_limit.replace("WEBHOOK_URL", hook_url)
            .replace("TEAMS_URL", "http://127.0.0.1:9")
            .replace("COLLAPSE", "50"),
            clock=clock,
            environ={"HEAL_TEST_HOOK_KEY": HOOK_KEY, "HEAL_TEST_DISCORD_URL": "http://127.0.0.1:9"},
        )
        heal.chat.clock = clock
        assert heal.chat.routed is not None
        heal.chat.routed.clock = clock
        heal.engine.plugins["local"] = Runs()
        await heal.ingest.ingest([alert()])
        await drive(heal, clock, 1)
        await heal.chat.run_once()
        assert len(hook.calls) == 1
        async with heal.db.read() as connection:
            rows = await notifications_repo.listing(connection, channel="ops-webhook")
        waiting = [r for r in rows if r["status"] == "pending"]
        assert len(waiting) == 2
        assert all(r["attempts"] == 0 for r in waiting)
        assert all(r["next_attempt_at"] >= clock.now + timedelta(seconds=60) for r in waiting)


async def test_a_channels_rate_limit_holds_across_two_workers(
    make_heal: HealFactory, clock: Clock
) -> None:
    """Two dispatchers (two workers on one database), each leasing one row at a time:
    the channel still gets one message per min_interval, not one per worker."""
    text_limit = POLICY.replace(
        "secret: hook_key, min_interval: 0", "secret: hook_key, min_interval: 60"
    )
    hook = FakeReceiver(HOOK_KEY, now=clock.now.timestamp())
    async with serving(hook.app()) as hook_url:
        policy = (
            text_limit.replace("WEBHOOK_URL", hook_url)
            .replace("TEAMS_URL", "http://127.0.0.1:9")
            .replace("COLLAPSE", "50")
        )
        environ = {"HEAL_TEST_HOOK_KEY": HOOK_KEY, "HEAL_TEST_DISCORD_URL": "http://127.0.0.1:9"}
        workers = [await make_heal(policy, clock=clock, environ=environ) for _ in range(2)]
        for worker in workers:
            worker.chat.clock = clock
            worker.chat.batch = 1
            assert worker.chat.routed is not None
            worker.chat.routed.clock = clock
            worker.engine.plugins["local"] = Runs()
        await workers[0].ingest.ingest([alert()])
        await drive(workers[0], clock, 1)
        await _take_turns(workers)
        assert len(hook.calls) == 1
        clock.advance(60)
        await _take_turns(workers)
        assert len(hook.calls) == 2  # the next one, a minute later, from either worker


async def _take_turns(workers: list[Any], rounds: int = 20) -> None:
    """The workers' dispatchers in turn, one row each, more rounds than there are rows."""
    for _ in range(rounds):
        for worker in workers:
            await worker.chat.run_once()
