"""A notify step aimed at the settings' chats: its message goes through the outbox into
the incident's card thread when there is one, else to the configured chat on its own."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import HealFactory
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from helpers import Clock, alert, drive, policy_text
from test_chat import (
    BOT_TOKEN,
    CHANNEL,
    CHAT_ID,
    SIGNING_SECRET,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    fakes,
)

from heal.app import Heal
from heal.demo.itsm import FakeITSM
from heal.store import incidents_repo, notifications_repo

__all__ = ["fakes"]  # the fixture, shared with test_chat

NOTIFY = """
  page-telegram:
    type: notify
    channel: telegram
    needs_approval: false
    message: "paging on-call for {{ alert.labels.service }}"
  page-slack:
    type: notify
    channel: slack
    needs_approval: false
    message: "paging on-call for {{ alert.labels.service }}"
"""


def _policy(itsm_url: str, approvals: bool) -> str:
    text = policy_text(itsm_url).replace("rules:", NOTIFY.lstrip("\n") + "rules:")
    text = text.replace(
        "actions: [{action: open-ticket, signal: [firing]}]",
        "actions: [{action: open-ticket, signal: [firing]}, {action: page-telegram}, "
        "{action: page-slack}]",
    )
    if not approvals:
        return text
    text += "approval: {enabled: true, require: {expires_in: 600}}\n"
    return text.replace("  open-ticket:\n", "  open-ticket:\n    needs_approval: true\n")


async def _heal(
    make_heal: HealFactory,
    itsm_url: str,
    clock: Clock,
    fakes: tuple[FakeTelegram, str, FakeSlack, str],
    approvals: bool,
) -> Heal:
    _, telegram_url, _, slack_url = fakes
    heal: Heal = await make_heal(
        _policy(itsm_url, approvals),
        clock=clock,
        telegram_bot_token=BOT_TOKEN,
        telegram_chat_id=CHAT_ID,
        telegram_webhook_secret=WEBHOOK_SECRET,
        telegram_api_url=telegram_url,
        slack_bot_token=SLACK_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_channel=CHANNEL,
        slack_api_url=f"{slack_url}/api",
    )
    heal.approvals.clock = clock
    heal.chat.clock = clock
    assert heal.chat.routed is not None
    heal.chat.routed.clock = clock
    return heal


async def _page(heal: Heal, clock: Clock) -> list[dict[str, Any]]:
    """Ingest the alert, send its card, run both notify steps; their delivery records."""
    await heal.ingest.ingest([alert()])
    while await heal.chat.run_once():
        pass
    async with heal.db.read() as connection:
        actions = await incidents_repo.actions_of(connection, 1)
    for action in actions:
        if action["action_name"].startswith("page-"):
            done = await drive(heal, clock, action["id"])
            assert done["status"] == "success"
            assert done["outputs"]["delivery"] == "queued"
    while await heal.chat.run_once():
        pass
    async with heal.db.read() as connection:
        rows = await notifications_repo.listing(connection, incident_id=1)
    return [r for r in rows if r["event"] == "notify"]


@pytest.mark.usefixtures("backend")
async def test_a_notify_step_to_a_chat_is_threaded_under_the_incidents_card(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    fakes: tuple[FakeTelegram, str, FakeSlack, str],
) -> None:
    telegram, _, slack, _ = fakes
    heal = await _heal(make_heal, itsm[1], clock, fakes, approvals=True)
    records = await _page(heal, clock)
    assert sorted((r["channel"], r["status"]) for r in records) == [
        ("slack", "sent"),
        ("telegram", "sent"),
    ]
    [card, page] = telegram.sent("sendMessage")
    assert "reply_markup" in card
    assert page["text"] == "paging on-call for checkout"
    assert page["reply_parameters"]["message_id"] == 101  # the card's
    [slack_card, slack_page] = slack.sent("chat.postMessage")
    assert "blocks" in slack_card
    assert slack_page["text"] == "paging on-call for checkout"
    assert slack_page["thread_ts"] == "1700000000.000001"


@pytest.mark.usefixtures("backend")
async def test_without_a_card_the_message_goes_to_the_configured_chat(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    fakes: tuple[FakeTelegram, str, FakeSlack, str],
) -> None:
    telegram, _, slack, _ = fakes
    heal = await _heal(make_heal, itsm[1], clock, fakes, approvals=False)
    records = await _page(heal, clock)
    assert sorted((r["channel"], r["status"]) for r in records) == [
        ("slack", "sent"),
        ("telegram", "sent"),
    ]
    [page] = telegram.sent("sendMessage")
    assert page["chat_id"] == CHAT_ID
    assert "reply_parameters" not in page
    assert page["text"].endswith("paging on-call for checkout")
    [slack_page] = slack.sent("chat.postMessage")
    assert (slack_page["channel"], "thread_ts" in slack_page) == (CHANNEL, False)
