"""Which events are written, from where: approvals (requested, decided, expired), the
action's moves, the verdict of verification; and slack as a route's channel, threaded
under the incident's approval card (SQLite; fakes of a webhook receiver and of Slack)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from conftest import HealFactory
from fakes.hooks import FakeReceiver
from fakes.server import serving
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from helpers import Clock, PluginStub, alert, drive

from heal.app import Heal
from heal.domain.approvals import Role, Signer
from heal.engine.interfaces import NodeCall, NodeResult
from heal.store import approvals_repo, notifications_repo

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

SLACK_TOKEN = "xoxb-slack-token-for-the-routes"
TELEGRAM_TOKEN = "123456:telegram-token-for-the-routes"
KEY = "route-hook-key"

POLICY = """
secrets:
  key: {env: HEAL_TEST_ROUTE_KEY}
approval:
  enabled: true
  require: {required_signatures: 1, expires_in: 600}
notifications:
  channels:
    hook: {type: webhook, url: "HOOK_URL/hook", secret: key, min_interval: 0}
  routes:
    - events: [approval_requested, approval_decided, approval_expired, action_succeeded,
               outcome_verified, outcome_ineffective, outcome_relapsed]
      channels: [hook]
    - match: {alertname: CheckoutDown}
      events: [incident_resolved, outcome_verified]
      channels: [slack]
actions:
  run-it:
    type: local
    command: [/bin/true]
rules:
  - name: checkout-down
    match: {alertname: =~Checkout.*}
    verify: {within: 120, quiet_for: 60}
    actions: [{action: run-it}]
"""


class Runs(PluginStub):
    type = "local"

    async def run_node(self, call: NodeCall) -> NodeResult:
        return NodeResult(outputs={"exit_code": 0})


async def _heal(
    make_heal: HealFactory, clock: Clock, hook_url: str, slack_url: str, policy: str = POLICY
) -> Heal:
    heal: Heal = await make_heal(
        policy.replace("HOOK_URL", hook_url),
        clock=clock,
        environ={"HEAL_TEST_ROUTE_KEY": KEY},
        slack_bot_token=SLACK_TOKEN,
        slack_channel="C0OPS",
        slack_api_url=f"{slack_url}/api",
    )
    for part in (heal.approvals, heal.verification, heal.chat, heal.chat.routed):
        part.clock = clock  # type: ignore[union-attr]
    cast(Any, heal.engine.plugins)["local"] = Runs()
    return heal


async def _events(heal: Heal, channel: str) -> list[tuple[str, str]]:
    async with heal.db.read() as connection:
        rows = await notifications_repo.listing(connection, channel=channel, limit=100)
    return [(r["event"], r["status"]) for r in reversed(rows)]


async def test_approval_action_and_verdict_events(make_heal: HealFactory, clock: Clock) -> None:
    hook, slack = FakeReceiver(KEY, now=clock.now.timestamp()), FakeSlack(SLACK_TOKEN)
    async with serving(hook.app()) as hook_url, serving(slack.app()) as slack_url:
        heal = await _heal(make_heal, clock, hook_url, slack_url)
        await heal.ingest.ingest([alert()])
        await heal.chat.run_once()  # the approval card, and the request on the hook
        async with heal.db.read() as connection:
            approval = await approvals_repo.for_action(connection, 1)
        assert approval is not None
        await heal.approvals.sign(
            approval["id"], Signer("carol", Role.APPROVER, frozenset()), approve=True
        )
        assert (await drive(heal, clock, 1))["status"] == "success"
        await heal.chat.run_once()

        clock.advance(30)
        await heal.ingest.ingest([alert(status="resolved")])
        clock.advance(61)
        assert await heal.verification.sweep() == 1
        hook.now = clock.now.timestamp()
        await heal.chat.run_once()
        # Slack's rate limit (about one message a second) held the second one back.
        assert await _events(heal, "slack") == [
            ("incident_resolved", "sent"),
            ("outcome_verified", "pending"),
        ]
        clock.advance(1)
        await heal.chat.run_once()

        assert await _events(heal, "hook") == [
            ("approval_requested", "sent"),
            ("approval_decided", "sent"),
            ("action_succeeded", "sent"),
            ("outcome_verified", "sent"),
        ]
        said: dict[str, Any] = {c.method: c.payload for c in hook.calls}
        assert said["approval_requested"]["approval"] == {"id": approval["id"]}
        assert "approved by carol" in said["approval_decided"]["text"]
        assert "fixed the incident" in said["outcome_verified"]["text"]

        # On slack: the card first (the approval's own), then the routed events in its thread.
        card, *replies = slack.sent("chat.postMessage")
        # (Replies with blocks are the rating prompt's, asked at the resolution.)
        routed = [
            r
            for r in replies
            if "blocks" not in r and ("resolved" in r["text"] or "fixed the" in r["text"])
        ]
        async with heal.db.read() as connection:
            posted = await notifications_repo.card_of(connection, provider="slack", incident_id=1)
        assert posted is not None
        assert len(routed) == 2
        assert {r["thread_ts"] for r in routed} == {posted["message_id"]}
        assert card.get("thread_ts") is None
        assert await _events(heal, "slack") == [
            ("incident_resolved", "sent"),
            ("outcome_verified", "sent"),
        ]


async def test_an_unanswered_approval_expires_into_the_route(
    make_heal: HealFactory, clock: Clock
) -> None:
    hook, slack = FakeReceiver(KEY, now=clock.now.timestamp()), FakeSlack(SLACK_TOKEN)
    async with serving(hook.app()) as hook_url, serving(slack.app()) as slack_url:
        heal = await _heal(make_heal, clock, hook_url, slack_url)
        await heal.ingest.ingest([alert()])
        assert (await drive(heal, clock, 1))["status"] == "skipped"
        hook.now = clock.now.timestamp()
        await heal.chat.run_once()
        assert [c.method for c in hook.calls] == ["approval_requested", "approval_expired"]
        assert "expired unanswered" in hook.calls[1].payload["text"]


class DiesAfterTheHooks:
    """Every hook writes its rows, then the connection is lost before the commit."""

    def __init__(self, hooks: Any) -> None:
        self.hooks = hooks

    async def on_transition(self, *args: Any) -> None:
        await self.hooks.on_transition(*args)
        raise ConnectionError("power cut")


async def test_an_event_commits_with_its_decision_or_not_at_all(
    make_heal: HealFactory, clock: Clock
) -> None:
    """The action's end is lost with its commit (heal died after the hooks wrote): so is
    its event; the wake that runs it again writes it once."""
    hook, slack = FakeReceiver(KEY, now=clock.now.timestamp()), FakeSlack(SLACK_TOKEN)
    async with serving(hook.app()) as hook_url, serving(slack.app()) as slack_url:
        heal = await _heal(
            make_heal,
            clock,
            hook_url,
            slack_url,
            # No approval to wait for; a command safe to run again after heal died.
            policy=POLICY.replace("enabled: true", "enabled: false").replace(
                "command: [/bin/true]", "command: [/bin/true]\n    idempotent: true"
            ),
        )
        await heal.ingest.ingest([alert()])
        hooks, retry = heal.engine.hook, heal.engine.commit_retry
        heal.engine.hook, heal.engine.commit_retry = DiesAfterTheHooks(hooks), 0
        with pytest.raises(ConnectionError):
            await heal.engine.wake(1, 0)
        assert await _events(heal, "hook") == []
        heal.engine.hook, heal.engine.commit_retry = hooks, retry
        done = await drive(heal, clock, 1)
        assert done["status"] == "success", done["message"]
        assert await _events(heal, "hook") == [("action_succeeded", "pending")]


async def test_telegram_as_a_routes_channel_replies_to_the_incidents_card(
    make_heal: HealFactory, clock: Clock
) -> None:
    telegram = FakeTelegram(TELEGRAM_TOKEN)
    hook = FakeReceiver(KEY, now=clock.now.timestamp())
    async with serving(telegram.app()) as telegram_url, serving(hook.app()) as hook_url:
        policy = POLICY.replace("HOOK_URL", hook_url).replace(
            "channels: [slack]", "channels: [telegram]"
        )
        heal: Heal = await make_heal(
            policy,
            clock=clock,
            environ={"HEAL_TEST_ROUTE_KEY": KEY},
            telegram_bot_token=TELEGRAM_TOKEN,
            telegram_chat_id="-1001",
            telegram_api_url=telegram_url,
        )
        for part in (heal.approvals, heal.chat, heal.chat.routed):
            part.clock = clock  # type: ignore[union-attr]
        await heal.ingest.ingest([alert()])
        await heal.chat.run_once()  # the approval card
        await heal.ingest.ingest([alert(status="resolved")])
        await heal.chat.run_once()

        card, *rest = telegram.sent("sendMessage")
        assert "reply_parameters" not in card  # the approval's card, with its buttons
        (resolved,) = [m for m in rest if m["text"] == "incident resolved: all alerts resolved"]
        async with heal.db.read() as connection:
            posted = await notifications_repo.card_of(
                connection, provider="telegram", incident_id=1
            )
        assert posted is not None
        assert resolved["reply_parameters"]["message_id"] == int(posted["message_id"])
        assert await _events(heal, "telegram") == [("incident_resolved", "sent")]
