"""Chat cards of approvals that became obsolete: closed, and refused when pressed."""

from __future__ import annotations

from helpers import alert
from test_chat import CHANNEL, CHAT_ID, Chat, chat, fakes

__all__ = ["chat", "fakes"]  # the fixtures, shared with test_chat


async def test_a_resolve_closes_the_card_and_a_late_press_is_refused(chat: Chat) -> None:
    _, _, approval_id = await chat.waiting()
    await chat.link("alice", telegram="111", slack="U111")
    await chat.dispatch()
    await chat.heal.ingest.ingest([alert(status="resolved")])
    await chat.dispatch()

    assert chat.telegram.keyboard(CHAT_ID, 101) == []
    assert chat.slack.buttons(CHANNEL, "1700000000.000001") == []
    [reply] = chat.telegram.sent("sendMessage")[1:]
    assert reply["reply_parameters"]["message_id"] == 101
    assert reply["text"] == (
        f"approval #{approval_id} obsolete: the incident resolved while it was pending; "
        "action skipped"
    )
    await chat.press_telegram(111, f"heal:{approval_id}:approve")
    [answer] = chat.telegram.sent("answerCallbackQuery")
    assert answer["text"].startswith(f"Approval {approval_id}: the approval is obsolete")


async def test_no_news_of_an_obsolete_approval_whose_card_never_left(chat: Chat) -> None:
    await chat.waiting()
    await chat.heal.ingest.ingest([alert(status="resolved")])
    await chat.dispatch()
    assert chat.telegram.sent("sendMessage") == []
    assert chat.slack.sent("chat.postMessage") == []
    statuses = [(row["kind"], row["status"]) for row in await chat.outbox()]
    assert statuses == [("card", "skipped"), ("update", "skipped")]
