"""Approval cards in Telegram and Slack, and the answers that come back from them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from conftest import HealFactory
from fakes.server import serving
from fakes.slack import FakeSlack, blocks_problem
from fakes.telegram import FakeTelegram
from helpers import Clock, alert, drive, policy_text
from log_capture import captured_logs
from sqlalchemy import select

from heal.api.app import create_app
from heal.app import Heal
from heal.demo.itsm import FakeITSM
from heal.notify.cards import Card
from heal.notify.slack import card_blocks
from heal.store import approvals_repo, incidents_repo, users_repo
from heal.store.tables import approval_signatures, chat_cards, notifications

BOT_TOKEN = "123456:telegram-bot-token-that-must-stay-secret"
WEBHOOK_SECRET = "telegram-webhook-secret"
SLACK_TOKEN = "xoxb-slack-bot-token-that-must-stay-secret"
SIGNING_SECRET = "slack-signing-secret"
CHAT_ID = "-100200300"
CHANNEL = "C0HEAL"

APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: %d, expires_in: 600}
"""


@dataclass
class Chat:
    heal: Heal
    telegram: FakeTelegram
    slack: FakeSlack
    client: httpx.AsyncClient
    clock: Clock

    async def dispatch(self) -> None:
        """Send everything due, as the background dispatcher does every second."""
        while await self.heal.chat.run_once():
            pass

    async def link(
        self,
        name: str,
        telegram: str,
        slack: str,
        groups: tuple[str, ...] = (),
        role: str = "approver",
    ) -> None:
        async with self.heal.db.write() as connection:
            user_id = await users_repo.add(connection, name, role, list(groups), self.clock())
            await users_repo.link_chat(connection, user_id, "telegram", telegram)
            await users_repo.link_chat(connection, user_id, "slack", slack)

    async def waiting(self, **labels: str) -> tuple[int, int, int]:
        """Ingest a firing alert; (incident id, action id, approval id) of its approval."""
        report = await self.heal.ingest.ingest([alert(**labels)])
        async with self.heal.db.read() as connection:
            actions = await incidents_repo.actions_of(connection, report.incident_ids[0])
            action = actions[-1]
            approval = await approvals_repo.for_action(connection, action["id"])
        assert action["status"] == "waiting"
        assert approval is not None
        return report.incident_ids[0], action["id"], approval["id"]

    async def press_telegram(
        self, user: int, data: str, *, secret: str | None = WEBHOOK_SECRET
    ) -> httpx.Response:
        update = {
            "update_id": 1,
            "callback_query": {
                "id": f"cq-{user}-{data}",
                "from": {"id": user, "is_bot": False, "first_name": "A"},
                "message": {"message_id": 101, "chat": {"id": int(CHAT_ID)}},
                "chat_instance": "1",
                "data": data,
            },
        }
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        return await self.client.post("/api/v1/chat/telegram", json=update, headers=headers)

    async def press_slack(
        self,
        user: str,
        action_id: str,
        approval_id: int,
        *,
        age: float = 0,
        secret: str = SIGNING_SECRET,
    ) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user},
            "channel": {"id": CHANNEL},
            "container": {"type": "message", "channel_id": CHANNEL},
            "actions": [{"action_id": action_id, "value": str(approval_id), "type": "button"}],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        stamp = str(int(time.time() - age))
        digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        headers = {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return await self.client.post(
            "/api/v1/chat/slack/interactions", content=body, headers=headers
        )

    async def outbox(self) -> list[dict[str, Any]]:
        async with self.heal.db.read() as connection:
            rows = await connection.execute(select(notifications).order_by(notifications.c.id))
            return [dict(r._mapping) for r in rows]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, str, FakeSlack, str]]:
    telegram, slack = FakeTelegram(BOT_TOKEN), FakeSlack(SLACK_TOKEN)
    async with serving(telegram.app()) as telegram_url, serving(slack.app()) as slack_url:
        yield telegram, telegram_url, slack, slack_url


@pytest.fixture
async def chat(
    request: pytest.FixtureRequest,
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    fakes: tuple[FakeTelegram, str, FakeSlack, str],
) -> AsyncIterator[Chat]:
    """heal with both chats configured; the quorum is 1 unless parametrised indirectly."""
    quorum: int = getattr(request, "param", 1)
    telegram, telegram_url, slack, slack_url = fakes
    heal: Heal = await make_heal(
        policy_text(itsm[1]) + APPROVAL % quorum,
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
    transport = httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://heal") as client:
        yield Chat(heal, telegram, slack, client, clock)


async def test_a_card_goes_to_both_chats_with_buttons(chat: Chat) -> None:
    incident_id, _, approval_id = await chat.waiting()
    await chat.dispatch()

    [card] = chat.telegram.sent("sendMessage")
    assert card["chat_id"] == CHAT_ID
    for fact in (f"incident #{incident_id}", "service=checkout", "open-ticket", "Risk: medium"):
        assert fact in card["text"]
    assert "Expires: 2026-01-01 12:10 UTC" in card["text"]
    assert [b[0]["callback_data"] for b in card["reply_markup"]["inline_keyboard"]] == [
        f"heal:{approval_id}:approve",
        f"heal:{approval_id}:reject",
        f"heal:{approval_id}:details",
    ]
    [slack_card] = chat.slack.sent("chat.postMessage")
    assert slack_card["channel"] == CHANNEL
    assert chat.slack.buttons(CHANNEL, "1700000000.000001") == ["approve", "reject", "details"]
    async with chat.heal.db.read() as connection:
        cards = (await connection.execute(select(chat_cards))).mappings().all()
    assert {(c["provider"], c["approval_id"], c["message_id"]) for c in cards} == {
        ("telegram", approval_id, "101"),
        ("slack", approval_id, "1700000000.000001"),
    }
    assert [n["status"] for n in await chat.outbox()] == ["sent"]
    await chat.dispatch()  # nothing is sent twice
    assert len(chat.telegram.sent("sendMessage")) == 1


async def test_approve_from_telegram_runs_the_action_and_threads_every_update(
    chat: Chat,
) -> None:
    _, action_id, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.dispatch()

    pressed = await chat.press_telegram(111, f"heal:{approval_id}:approve")
    assert pressed.status_code == 200
    [answer] = chat.telegram.sent("answerCallbackQuery")
    assert answer["callback_query_id"] == f"cq-111-heal:{approval_id}:approve"
    assert f"Approval {approval_id} approved" in answer["text"]

    await chat.dispatch()
    [closed] = chat.telegram.sent("editMessageReplyMarkup")
    assert closed == {
        "chat_id": CHAT_ID,
        "message_id": 101,
        "reply_markup": {"inline_keyboard": []},
    }
    assert chat.telegram.keyboard(CHAT_ID, 101) == []
    assert chat.slack.buttons(CHANNEL, "1700000000.000001") == []  # Slack's card closes too

    finished = await drive(chat.heal, chat.clock, action_id)
    assert finished["status"] == "success"
    await chat.dispatch()
    replies = chat.telegram.sent("sendMessage")[1:]
    assert [r["reply_parameters"]["message_id"] for r in replies] == [101, 101, 101]
    assert "approved by alice via telegram" in replies[0]["text"]
    assert "running" in replies[1]["text"]
    assert "success" in replies[2]["text"]
    slack_replies = chat.slack.sent("chat.postMessage")[1:]
    assert [r["thread_ts"] for r in slack_replies] == ["1700000000.000001"] * 3


async def test_wrong_or_missing_telegram_secret_is_refused(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    for secret in (None, "not-the-secret"):
        refused = await chat.press_telegram(111, f"heal:{approval_id}:approve", secret=secret)
        assert refused.status_code == 401
    async with chat.heal.db.read() as connection:
        assert (await approvals_repo.get(connection, approval_id))["status"] == "pending"
    assert chat.telegram.sent("answerCallbackQuery") == []


async def test_a_disabled_user_cannot_approve_from_chat(chat: Chat) -> None:
    await chat.link("dora", "444", "U444")
    _, _, approval_id = await chat.waiting()
    async with chat.heal.db.write() as connection:
        dora = await users_repo.by_name(connection, "dora")
        assert dora is not None
        await users_repo.set_disabled(connection, int(dora["id"]), True)
    pressed = await chat.press_telegram(444, f"heal:{approval_id}:approve")
    assert pressed.status_code == 200
    [answer] = chat.telegram.sent("answerCallbackQuery")
    assert answer["text"] == "Refused: heal user dora is disabled."
    await chat.press_slack("U444", "approve", approval_id)
    [told] = chat.slack.sent("chat.postEphemeral")
    assert told["text"] == "Refused: heal user dora is disabled."
    async with chat.heal.db.read() as connection:
        assert (await approvals_repo.get(connection, approval_id))["status"] == "pending"
        assert await approvals_repo.signatures(connection, approval_id) == []


async def test_an_unlinked_chat_user_cannot_approve(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    pressed = await chat.press_telegram(999, f"heal:{approval_id}:approve")
    assert pressed.status_code == 200  # so Telegram does not redeliver
    [answer] = chat.telegram.sent("answerCallbackQuery")
    assert "not linked" in answer["text"]
    assert "heal users link NAME --telegram 999" in answer["text"]
    slack = await chat.press_slack("U999", "approve", approval_id)
    assert slack.status_code == 200
    [told] = chat.slack.sent("chat.postEphemeral")
    assert told["user"] == "U999"
    assert "not linked" in told["text"]
    async with chat.heal.db.read() as connection:
        assert (await approvals_repo.get(connection, approval_id))["status"] == "pending"


async def test_a_redelivered_press_signs_once(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    for _ in range(2):
        assert (await chat.press_telegram(111, f"heal:{approval_id}:approve")).status_code == 200
    first, second = chat.telegram.sent("answerCallbackQuery")
    assert "approved" in first["text"]
    assert "no longer pending" in second["text"]
    async with chat.heal.db.read() as connection:
        signed = (await connection.execute(select(approval_signatures))).mappings().all()
    assert [(s["signer"], s["channel"]) for s in signed] == [("alice", "telegram")]


async def test_details_button_shows_the_approval_without_signing(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.press_telegram(111, f"heal:{approval_id}:details")
    [answer] = chat.telegram.sent("answerCallbackQuery")
    assert answer["text"].startswith(
        f"Approval {approval_id} pending, action waiting, signed: none yet\nApproval needed"
    )
    assert answer["show_alert"] is True
    async with chat.heal.db.read() as connection:
        assert await approvals_repo.signatures(connection, approval_id) == []


@pytest.mark.parametrize("chat", [2], indirect=True)
async def test_quorum_of_two_from_two_chats_and_one_signature_each(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.link("bob", telegram="222", slack="U222")
    await chat.dispatch()

    await chat.press_telegram(111, f"heal:{approval_id}:approve")
    await chat.press_slack("U111", "approve", approval_id)  # alice again, from Slack
    await chat.dispatch()
    assert chat.telegram.keyboard(CHAT_ID, 101) != []  # still open: 1 of 2
    [once_more] = chat.slack.sent("chat.postEphemeral")
    assert "Refused" in once_more["text"]
    assert "already signed" in once_more["text"]

    await chat.press_slack("U222", "approve", approval_id)
    await chat.dispatch()
    async with chat.heal.db.read() as connection:
        approval = await approvals_repo.get(connection, approval_id)
    assert approval["status"] == "approved"
    assert chat.telegram.keyboard(CHAT_ID, 101) == []
    threaded = [m["text"] for m in chat.telegram.sent("sendMessage")[1:]]
    assert any("signed by alice via telegram (1 of 2)" in t for t in threaded)
    assert any("approved by bob via slack (2 of 2)" in t for t in threaded)


async def test_slack_forged_and_stale_signatures_are_refused(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    forged = await chat.press_slack("U111", "approve", approval_id, secret="guessed")
    stale = await chat.press_slack("U111", "approve", approval_id, age=6 * 60)
    assert forged.status_code == 401
    assert stale.status_code == 401
    async with chat.heal.db.read() as connection:
        assert (await approvals_repo.get(connection, approval_id))["status"] == "pending"

    await chat.dispatch()
    fresh = await chat.press_slack("U111", "reject", approval_id, age=60)
    assert fresh.status_code == 200
    await chat.dispatch()
    async with chat.heal.db.read() as connection:
        assert (await approvals_repo.get(connection, approval_id))["status"] == "rejected"
    [updated] = chat.slack.sent("chat.update")
    assert updated["ts"] == "1700000000.000001"
    assert "rejected by alice via slack" in updated["text"]
    assert chat.slack.buttons(CHANNEL, "1700000000.000001") == []


async def test_one_card_per_incident_within_ten_minutes(chat: Chat) -> None:
    incident_id, action_id, first = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.dispatch()
    await chat.press_telegram(111, f"heal:{first}:approve")
    await drive(chat.heal, chat.clock, action_id)

    chat.clock.advance(60)  # the same incident asks again: its card is under the first
    again, _, second = await chat.waiting(instance="db-2")
    assert again == incident_id
    await chat.dispatch()
    cards = [m for m in chat.telegram.sent("sendMessage") if "reply_markup" in m]
    assert len(cards) == 2
    assert cards[1]["reply_parameters"]["message_id"] == 101
    assert f"heal:{second}:approve" in json.dumps(cards[1]["reply_markup"])
    slack_cards = [m for m in chat.slack.sent("chat.postMessage") if "blocks" in m]
    assert slack_cards[1]["thread_ts"] == slack_cards[0].get("thread_ts", "1700000000.000001")

    await chat.press_telegram(111, f"heal:{second}:reject")
    chat.clock.advance(11 * 60)  # past the window: a card of its own
    await chat.waiting(instance="db-3")
    await chat.dispatch()
    cards = [m for m in chat.telegram.sent("sendMessage") if "reply_markup" in m]
    assert len(cards) == 3
    assert "reply_parameters" not in cards[2]


async def test_no_card_for_a_resolved_incident(chat: Chat) -> None:
    await chat.waiting()
    await chat.heal.ingest.ingest([alert(status="resolved")])
    await chat.dispatch()
    assert chat.telegram.sent("sendMessage") == []
    assert chat.slack.sent("chat.postMessage") == []
    [card, *_] = await chat.outbox()
    assert card["status"] == "skipped"
    assert "resolved" in card["error"]


async def test_an_update_without_a_card_is_a_message_of_its_own(chat: Chat) -> None:
    incident_id, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.press_telegram(111, f"heal:{approval_id}:approve")  # before any card was sent
    await chat.dispatch()
    [alone] = chat.telegram.sent("sendMessage")  # the card was moot, the news is not
    assert "reply_parameters" not in alone
    assert alone["text"].startswith(f"Incident #{incident_id}: approved by alice")


async def test_failed_sends_are_retried_and_never_store_a_secret(chat: Chat) -> None:
    await chat.waiting()
    chat.telegram.fail_next(429, "Too Many Requests: retry after 7", retry_after=7)
    chat.slack.rate_limited = 1
    await chat.dispatch()
    [row] = await chat.outbox()
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert "Too Many Requests" in row["error"]
    assert "rate limited" in row["error"]
    assert BOT_TOKEN not in row["error"]
    assert row["next_attempt_at"] == chat.clock.now + timedelta(seconds=7)

    await chat.dispatch()  # not due yet
    assert len(chat.telegram.sent("sendMessage")) == 1
    chat.clock.advance(7)
    await chat.dispatch()
    [row] = await chat.outbox()
    assert row["status"] == "sent"
    assert row["sent_to"] == "telegram,slack"
    assert len(chat.telegram.sent("sendMessage")) == 2  # the failed try, then the card


async def test_a_channel_that_fails_does_not_repost_on_the_other(chat: Chat) -> None:
    await chat.waiting()
    chat.slack.rate_limited = 1
    await chat.dispatch()
    chat.clock.advance(60)
    await chat.dispatch()
    assert len(chat.telegram.sent("sendMessage")) == 1
    assert len(chat.slack.sent("chat.postMessage")) == 2  # the 429, then the card
    [row] = await chat.outbox()
    assert row["status"] == "sent"


async def test_a_permanent_error_fails_the_notification(chat: Chat) -> None:
    await chat.waiting()
    chat.telegram.token = "another-bot"  # heal's token is now wrong: 401
    chat.slack.token = "xoxb-other"  # invalid_auth
    await chat.dispatch()
    [row] = await chat.outbox()
    assert row["status"] == "failed"
    assert "Unauthorized" in row["error"]
    assert "invalid_auth" in row["error"]
    assert BOT_TOKEN not in row["error"]
    assert SLACK_TOKEN not in row["error"]


async def test_a_notification_given_up_is_one_redacted_error_line(chat: Chat) -> None:
    _, action_id, approval_id = await chat.waiting()
    chat.telegram.token = "another-bot"
    chat.slack.token = "xoxb-other"
    with captured_logs() as logs:
        await chat.dispatch()
    [line] = logs.lines("chat notification failed")
    assert line["level"] == "error"
    assert (line["action_id"], line["approval_id"]) == (action_id, approval_id)
    assert (line["rule"], line["action"]) == ("checkout-down", "open-ticket")
    assert "Unauthorized" in line["reason"]
    assert "invalid_auth" in line["reason"]
    assert BOT_TOKEN not in logs.text
    assert SLACK_TOKEN not in logs.text


async def test_the_dispatcher_runs_in_the_background(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    fakes: tuple[FakeTelegram, str, FakeSlack, str],
) -> None:
    telegram, telegram_url, _, _ = fakes
    heal: Heal = await make_heal(
        policy_text(itsm[1]) + APPROVAL % 1,
        worker=True,
        telegram_bot_token=BOT_TOKEN,
        telegram_chat_id=CHAT_ID,
        telegram_webhook_secret=WEBHOOK_SECRET,
        telegram_api_url=telegram_url,
    )
    await heal.ingest.ingest([alert()])
    for _ in range(300):
        if telegram.sent("sendMessage"):
            break
        await asyncio.sleep(0.05)
    [card] = telegram.sent("sendMessage")
    assert "Approval needed: open-ticket" in card["text"]


async def test_malformed_webhooks_get_422_and_change_nothing(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    not_json = await chat.client.post("/api/v1/chat/telegram", content=b"{", headers=headers)
    no_sender = await chat.client.post(
        "/api/v1/chat/telegram",
        json={"update_id": 2, "callback_query": {"id": "q", "data": f"heal:{approval_id}:approve"}},
        headers=headers,
    )
    assert not_json.status_code == 422
    assert no_sender.status_code == 422
    not_a_button = await chat.press_telegram(111, "somebody-else:1")
    assert not_a_button.status_code == 200
    assert chat.telegram.sent("answerCallbackQuery")[-1]["text"] == "This button is not heal's."

    body = b"nothing=here"
    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    no_payload = await chat.client.post(
        "/api/v1/chat/slack/interactions",
        content=body,
        headers={
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert no_payload.status_code == 422
    async with chat.heal.db.read() as connection:
        assert (await approvals_repo.get(connection, approval_id))["status"] == "pending"


async def test_chat_webhooks_are_404_when_the_chat_is_not_configured(
    api: tuple[httpx.AsyncClient, Heal],
) -> None:
    client, _ = api
    telegram = await client.post("/api/v1/chat/telegram", json={})
    slack = await client.post("/api/v1/chat/slack/interactions", content=b"payload={}")
    assert telegram.status_code == 404
    assert slack.status_code == 404


@pytest.mark.parametrize(
    ("name", "role", "reason"),
    [
        ("heal", "approver", "separation of duties"),  # heal requested the action
        ("victor", "viewer", "is a viewer"),
    ],
)
async def test_who_may_not_sign_is_refused_in_the_chat_too(
    chat: Chat, name: str, role: str, reason: str
) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link(name, telegram="333", slack="U333", role=role)
    await chat.dispatch()

    pressed = await chat.press_telegram(333, f"heal:{approval_id}:approve")
    slack = await chat.press_slack("U333", "approve", approval_id)
    assert (pressed.status_code, slack.status_code) == (200, 200)
    [answer] = chat.telegram.sent("answerCallbackQuery")
    [told] = chat.slack.sent("chat.postEphemeral")
    for said in (answer["text"], told["text"]):
        assert said.startswith("Refused:")
        assert reason in said
    await chat.dispatch()
    assert chat.telegram.keyboard(CHAT_ID, 101) != []  # the card stays open
    async with chat.heal.db.read() as connection:
        assert await approvals_repo.signatures(connection, approval_id) == []
        assert (await approvals_repo.get(connection, approval_id))["status"] == "pending"


async def test_a_server_error_is_retried_with_backoff(chat: Chat) -> None:
    await chat.waiting()
    chat.telegram.fail_next(500, "Internal Server Error")
    await chat.dispatch()
    [row] = await chat.outbox()
    assert (row["status"], row["attempts"], row["sent_to"]) == ("pending", 1, "slack")
    assert row["error"] == "telegram sendMessage: Internal Server Error"
    assert row["next_attempt_at"] == chat.clock.now + timedelta(seconds=2)

    chat.clock.advance(2)
    await chat.dispatch()
    [row] = await chat.outbox()
    assert row["status"] == "sent"
    assert row["error"] is None
    tries = chat.telegram.sent("sendMessage")
    assert len(tries) == 2  # the 500, then the card
    assert tries[1] == tries[0]
    assert chat.telegram.keyboard(CHAT_ID, 101) != []
    assert len(chat.slack.sent("chat.postMessage")) == 1


async def test_an_unreachable_chat_never_stores_its_token(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    heal: Heal = await make_heal(
        policy_text(itsm[1]) + APPROVAL % 1,
        clock=clock,
        telegram_bot_token=BOT_TOKEN,
        telegram_chat_id=CHAT_ID,
        telegram_api_url=f"http://127.0.0.1:{port}",
    )
    heal.chat.clock = clock
    await heal.ingest.ingest([alert()])
    await heal.chat.run_once()
    async with heal.db.read() as connection:
        [row] = (await connection.execute(select(notifications))).mappings().all()
    assert row["status"] == "pending"
    assert row["error"] == "telegram sendMessage: ConnectError"
    assert BOT_TOKEN not in row["error"]


async def test_a_lease_that_ran_out_is_not_sent_twice(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.dispatch()
    await chat.press_telegram(111, f"heal:{approval_id}:approve")
    [slow] = await chat.heal.chat.claim()  # one dispatcher leases the news, then stalls
    await chat.dispatch()  # another finds it leased and leaves it alone
    assert len(chat.telegram.sent("sendMessage")) == 1  # the card only

    chat.clock.advance(61)  # the lease runs out: the other one sends it
    await chat.dispatch()
    await chat.heal.chat.deliver(slow)  # the stalled one wakes up: nothing more goes out
    [reply] = chat.telegram.sent("sendMessage")[1:]
    assert "approved by alice via telegram" in reply["text"]
    assert len(chat.slack.sent("chat.postMessage")) == 2  # card and reply
    assert [n["status"] for n in await chat.outbox()] == ["sent", "sent"]


@pytest.mark.parametrize("chat", [2], indirect=True)
async def test_news_waits_for_a_card_that_is_late(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    chat.telegram.fail_next(500, "Internal Server Error")
    await chat.dispatch()  # Slack has the card, Telegram will have it later
    await chat.press_slack("U111", "approve", approval_id)  # 1 of 2
    await chat.dispatch()
    assert chat.telegram.sent("sendMessage") == [chat.telegram.calls[0].payload]
    [slack_reply] = chat.slack.sent("chat.postMessage")[1:]
    assert slack_reply["thread_ts"] == "1700000000.000001"

    chat.clock.advance(2)
    await chat.dispatch()
    card, reply = chat.telegram.sent("sendMessage")[1:]
    assert "inline_keyboard" in card["reply_markup"]
    assert reply["reply_parameters"]["message_id"] == 101  # in the card's thread
    assert "signed by alice via slack (1 of 2)" in reply["text"]
    assert [n["status"] for n in await chat.outbox()] == ["sent", "sent"]


async def test_odd_slack_headers_and_payloads_are_refused_not_crashed(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    body = urlencode({"payload": json.dumps({"type": "block_actions", "user": "U111"})}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    good = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    url = "/api/v1/chat/slack/interactions"
    not_ascii = await chat.client.post(
        url, content=body, headers={**good, "X-Slack-Signature": "v0=\xe9".encode("latin-1")}
    )
    odd_digit = await chat.client.post(
        url, content=body, headers={**good, "X-Slack-Request-Timestamp": b"\xb2"}
    )
    user_not_an_object = await chat.client.post(url, content=body, headers=good)
    assert not_ascii.status_code == 401
    assert odd_digit.status_code == 401
    assert user_not_an_object.status_code == 422
    async with chat.heal.db.read() as connection:
        assert (await approvals_repo.get(connection, approval_id))["status"] == "pending"


async def test_an_expired_approval_closes_its_card(chat: Chat) -> None:
    _, action_id, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.dispatch()
    row = await drive(chat.heal, chat.clock, action_id)  # nobody answers: it expires
    assert row["status"] == "skipped"
    await chat.dispatch()
    assert chat.telegram.keyboard(CHAT_ID, 101) == []
    assert chat.slack.buttons(CHANNEL, "1700000000.000001") == []
    [reply] = chat.telegram.sent("sendMessage")[1:]
    assert reply["reply_parameters"]["message_id"] == 101
    assert "expired" in reply["text"]
    pressed = await chat.press_telegram(111, f"heal:{approval_id}:approve")
    assert pressed.status_code == 200  # a late press on an old card is answered politely
    [answer] = chat.telegram.sent("answerCallbackQuery")
    assert answer["text"].startswith(f"Approval {approval_id}: ")
    assert "expired" in answer["text"]
    async with chat.heal.db.read() as connection:
        assert await approvals_repo.signatures(connection, approval_id) == []


async def test_alert_text_cannot_ping_a_slack_channel(chat: Chat) -> None:
    await chat.waiting(service="<!channel> " + "x" * 300)
    await chat.dispatch()
    [card] = chat.slack.sent("chat.postMessage")
    assert "<!channel>" not in json.dumps(card)
    assert "&lt;!channel&gt;" in card["text"]
    assert [n["status"] for n in await chat.outbox()] == ["sent"]


def test_a_huge_label_still_fits_a_slack_card() -> None:
    card = Card(
        approval_id=1,
        incident_id=1,
        incident_title="CheckoutDown",
        resource={"service": "x" * 3000},
        action="open-ticket",
        description="",
        risk="medium",
        required_signatures=1,
        expires_at=datetime(2026, 1, 1, 12, 10, tzinfo=UTC),
    )
    for blocks in (card_blocks(card), card_blocks(card, outcome="y" * 3000)):
        assert not blocks_problem(blocks)
        texts = [f["text"] for b in blocks for f in b.get("fields", [])]
        assert max(len(t) for t in texts) == 2000
        assert texts[1].endswith("…")


async def test_news_for_a_deleted_card_still_arrives(chat: Chat) -> None:
    incident_id, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.dispatch()
    del chat.telegram.messages[(CHAT_ID, 101)]  # someone deleted both cards
    del chat.slack.messages[(CHANNEL, "1700000000.000001")]

    await chat.press_telegram(111, f"heal:{approval_id}:approve")
    await chat.dispatch()
    [reply] = chat.telegram.sent("sendMessage")[1:]  # Telegram replies to a lost message
    assert reply["reply_parameters"]["allow_sending_without_reply"] is True
    assert "approved by alice via telegram" in reply["text"]
    *_, lost, alone = chat.slack.sent("chat.postMessage")  # Slack has no thread to reply in
    assert lost["thread_ts"] == "1700000000.000001"
    assert "thread_ts" not in alone
    assert alone["text"].startswith(f"Incident #{incident_id}: approved by alice")
    assert [n["status"] for n in await chat.outbox()] == ["sent", "sent"]
    async with chat.heal.db.read() as connection:
        cards = (await connection.execute(select(chat_cards))).mappings().all()
    assert all(c["closed_at"] is not None for c in cards)
