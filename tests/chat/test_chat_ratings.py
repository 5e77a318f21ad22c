"""Rating an incident's remediation from the chat: one prompt with buttons 1-5 in the
incident's card thread when it resolves, and presses that rate as the API does."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from helpers import alert, drive
from test_chat import CHANNEL, CHAT_ID, SIGNING_SECRET, WEBHOOK_SECRET, Chat, chat, fakes

from heal.approvals.rating_prompt import ask_for_ratings
from heal.store import incidents_repo, timeline_repo, users_repo
from heal.verify.ratings import remediation

__all__ = ["chat", "fakes"]  # the fixtures, shared with test_chat

_QUERY_IDS = itertools.count(1)
SCORES = ["1", "2", "3", "4", "5"]


async def _fixed(chat: Chat) -> int:
    """An approval's card, approved from Telegram, its action run to success and all its
    news sent: the incident's id."""
    incident_id, action_id, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.dispatch()
    assert (await chat.press_telegram(111, f"heal:{approval_id}:approve")).status_code == 200
    assert (await drive(chat.heal, chat.clock, action_id))["status"] == "success"
    await chat.dispatch()
    return incident_id


async def _resolved_after_a_fix(chat: Chat) -> int:
    """As ``_fixed``, then the alert resolved: its rating prompt is queued."""
    incident_id = await _fixed(chat)
    await chat.heal.ingest.ingest([alert(status="resolved")])
    return incident_id


def _telegram_prompt(chat: Chat) -> dict[str, Any]:
    [prompt] = [
        m
        for m in chat.telegram.messages.values()
        if any(
            b["callback_data"].startswith("heal-rate:")
            for row in m.get("reply_markup", {}).get("inline_keyboard", [])
            for b in row
        )
    ]
    return prompt


def _slack_prompt(chat: Chat) -> tuple[str, dict[str, Any]]:
    [(ts, prompt)] = [
        (ts, m)
        for (_, ts), m in chat.slack.messages.items()
        if any(b.get("block_id", "").startswith("heal-rating-") for b in m.get("blocks", []))
    ]
    return ts, prompt


async def _press_telegram(
    chat: Chat, user: int, data: str, message_id: int, *, secret: str = WEBHOOK_SECRET
) -> httpx.Response:
    update = {
        "update_id": next(_QUERY_IDS),
        "callback_query": {
            "id": f"rate-{next(_QUERY_IDS)}",
            "from": {"id": user, "is_bot": False, "first_name": "A"},
            "message": {"message_id": message_id, "chat": {"id": int(CHAT_ID)}},
            "chat_instance": "1",
            "data": data,
        },
    }
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
    return await chat.client.post("/api/v1/chat/telegram", json=update, headers=headers)


async def _press_slack(
    chat: Chat, user: str, value: str, ts: str, *, secret: str = SIGNING_SECRET
) -> httpx.Response:
    score = value.rsplit(":", 1)[-1]
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL, "message_ts": ts},
        "message": {"ts": ts, "type": "message"},
        "actions": [
            {"action_id": f"heal-rate-{score}", "value": value, "type": "button"},
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return await chat.client.post("/api/v1/chat/slack/interactions", content=body, headers=headers)


async def _ratings(chat: Chat, incident_id: int) -> list[tuple[str, int]]:
    async with chat.heal.db.read() as connection:
        incident = await incidents_repo.get(connection, incident_id)
        assert incident is not None
        summary = await remediation(connection, incident)
    return [(r["rated_by"], r["score"]) for r in summary["ratings"]]


async def _prompt_rows(chat: Chat) -> list[dict[str, Any]]:
    return [n for n in await chat.outbox() if n["kind"] == "rating"]


async def test_a_resolved_incident_asks_its_thread_for_a_rating_once(chat: Chat) -> None:
    incident_id = await _resolved_after_a_fix(chat)
    await chat.dispatch()

    prompt = _telegram_prompt(chat)
    assert prompt["reply_to_message"]["message_id"] == 101  # under the incident's card
    assert "How well did the remediation work?" in prompt["text"]
    assert f"Incident #{incident_id}" in prompt["text"]
    [row] = prompt["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in row] == SCORES
    assert [b["callback_data"] for b in row] == [f"heal-rate:{incident_id}:{s}" for s in SCORES]

    ts, slack_prompt = _slack_prompt(chat)
    assert slack_prompt["thread_ts"] == "1700000000.000001"  # the card's
    assert chat.slack.buttons(CHANNEL, ts) == [f"heal-rate-{s}" for s in SCORES]
    [rating_row] = await _prompt_rows(chat)
    assert (rating_row["status"], rating_row["sent_to"]) == ("sent", "telegram,slack")

    # The resolution redelivered, and the hook asked again: still one prompt.
    await chat.heal.ingest.ingest([alert(status="resolved")])
    async with chat.heal.db.write() as connection:
        await ask_for_ratings(connection, [incident_id], chat.clock())
    await chat.dispatch()
    assert len(await _prompt_rows(chat)) == 1
    _telegram_prompt(chat)  # exactly one, or it raises
    _slack_prompt(chat)


async def test_no_prompt_without_a_card_or_without_a_remediation(chat: Chat) -> None:
    # Resolved before its card went out: the card is skipped, nobody has a thread.
    await chat.waiting()
    await chat.heal.ingest.ingest([alert(status="resolved")])
    await chat.dispatch()
    # A card was shown, but its action never ran (the approval became obsolete).
    await chat.waiting(service="billing")
    await chat.dispatch()
    await chat.heal.ingest.ingest([alert(status="resolved", service="billing")])
    await chat.dispatch()
    assert await _prompt_rows(chat) == []
    assert not any("How well" in m["text"] for m in chat.telegram.messages.values())


async def test_a_press_rates_as_the_api_does_and_shows_who_rated_what(chat: Chat) -> None:
    incident_id = await _resolved_after_a_fix(chat)
    await chat.dispatch()
    prompt = _telegram_prompt(chat)
    message_id = prompt["message_id"]

    pressed = await _press_telegram(chat, 111, f"heal-rate:{incident_id}:4", message_id)
    assert pressed.status_code == 200
    [answer] = chat.telegram.sent("answerCallbackQuery")[-1:]
    assert answer["text"] == f"Thanks, alice: incident #{incident_id} rated 4/5."
    assert answer["show_alert"] is False
    assert await _ratings(chat, incident_id) == [("alice", 4)]
    shown = chat.telegram.messages[(CHAT_ID, message_id)]
    assert shown["text"].endswith("Rated: alice 4/5")
    assert [b["text"] for b in shown["reply_markup"]["inline_keyboard"][0]] == SCORES
    async with chat.heal.db.read() as connection:
        entries = await timeline_repo.for_incident(connection, incident_id)
    assert [e["message"] for e in entries if e["kind"] == "incident.rated"] == [
        "remediation rated 4/5 by alice"
    ]

    # Pressed again (or redelivered): nothing recorded twice, nothing edited.
    edits = len(chat.telegram.sent("editMessageText"))
    await _press_telegram(chat, 111, f"heal-rate:{incident_id}:4", message_id)
    assert chat.telegram.sent("answerCallbackQuery")[-1]["text"] == (
        f"You rated incident #{incident_id} 4/5 already."
    )
    assert len(chat.telegram.sent("editMessageText")) == edits
    # A second thought replaces the first.
    await _press_telegram(chat, 111, f"heal-rate:{incident_id}:2", message_id)
    assert chat.telegram.sent("answerCallbackQuery")[-1]["text"] == (
        f"Thanks, alice: incident #{incident_id} rated from 4/5 to 2/5."
    )
    assert await _ratings(chat, incident_id) == [("alice", 2)]

    # Bob rates from Slack: his rating joins, and the Slack prompt shows both.
    await chat.link("bob", telegram="222", slack="U222", role="operator")
    ts, _ = _slack_prompt(chat)
    pressed = await _press_slack(chat, "U222", f"heal-rate:{incident_id}:5", ts)
    assert pressed.status_code == 200
    [told] = chat.slack.sent("chat.postEphemeral")
    assert (told["user"], told["text"]) == (
        "U222",
        f"Thanks, bob: incident #{incident_id} rated 5/5.",
    )
    _, slack_prompt = _slack_prompt(chat)
    assert slack_prompt["text"].endswith("Rated: alice 2/5, bob 5/5")
    assert chat.slack.buttons(CHANNEL, ts) == [f"heal-rate-{s}" for s in SCORES]
    assert sorted(await _ratings(chat, incident_id)) == [("alice", 2), ("bob", 5)]


async def test_who_may_not_rate_is_told_why_and_nothing_is_recorded(chat: Chat) -> None:
    incident_id = await _resolved_after_a_fix(chat)
    await chat.dispatch()
    message_id = _telegram_prompt(chat)["message_id"]
    ts, _ = _slack_prompt(chat)
    await chat.link("vera", telegram="333", slack="U333", role="viewer")
    await chat.link("dora", telegram="444", slack="U444", role="operator")
    async with chat.heal.db.write() as connection:
        dora = await users_repo.by_name(connection, "dora")
        assert dora is not None
        await users_repo.set_disabled(connection, int(dora["id"]), True)

    data = f"heal-rate:{incident_id}:5"
    for user, said in (
        (999, "heal users link NAME --telegram 999"),
        (333, "Refused: heal user vera is a viewer; rating a remediation takes an operator."),
        (444, "Refused: heal user dora is disabled."),
    ):
        assert (await _press_telegram(chat, user, data, message_id)).status_code == 200
        refusal = chat.telegram.sent("answerCallbackQuery")[-1]
        assert said in refusal["text"]
        assert refusal["show_alert"] is True
    await _press_slack(chat, "U999", data, ts)
    [told] = chat.slack.sent("chat.postEphemeral")
    assert "heal users link NAME --slack U999" in told["text"]

    assert await _ratings(chat, incident_id) == []
    assert chat.telegram.sent("editMessageText") == []
    assert "Rated:" not in _slack_prompt(chat)[1]["text"]


async def test_forged_presses_are_refused(chat: Chat) -> None:
    incident_id = await _resolved_after_a_fix(chat)
    await chat.dispatch()
    message_id = _telegram_prompt(chat)["message_id"]
    ts, _ = _slack_prompt(chat)
    data = f"heal-rate:{incident_id}:1"
    refused = await _press_telegram(chat, 111, data, message_id, secret="not-the-secret")
    assert refused.status_code == 401
    refused = await _press_slack(chat, "U111", data, ts, secret="not-the-signing-secret")
    assert refused.status_code == 401
    assert await _ratings(chat, incident_id) == []


async def test_a_prompt_the_chat_refused_for_now_is_retried(chat: Chat) -> None:
    await _fixed(chat)
    await chat.heal.ingest.ingest([alert(status="resolved")])
    chat.telegram.fail_next(429, "Too Many Requests: retry after 30", retry_after=30)
    await chat.dispatch()
    [row] = await _prompt_rows(chat)
    assert (row["status"], row["attempts"], row["sent_to"]) == ("pending", 1, "slack")
    assert row["next_attempt_at"] == chat.clock() + timedelta(seconds=30)
    assert "retry after 30" in row["error"]
    chat.clock.advance(30)
    await chat.dispatch()
    [row] = await _prompt_rows(chat)
    assert (row["status"], row["sent_to"]) == ("sent", "slack,telegram")
    _telegram_prompt(chat)
    _slack_prompt(chat)  # not posted twice
