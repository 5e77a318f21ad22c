"""The end of every executor action is news in the incident's chat thread: the result,
how long it took, and the links it produced."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import HealFactory
from helpers import Clock, PluginStub, alert, drive, policy_text
from test_chat import BOT_TOKEN, CHAT_ID, WEBHOOK_SECRET, fakes

from heal.app import Heal
from heal.demo.itsm import FakeITSM
from heal.domain.access import Role
from heal.domain.approvals import Signer
from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult
from heal.store import approvals_repo, incidents_repo, users_repo

__all__ = ["fakes"]  # the fixture, shared with test_chat

EXECUTOR = """
  run-it:
    type: local
    command: [/usr/bin/env]
    needs_approval: NEEDS
secrets_unused: {}
"""


class Runs(PluginStub):
    type = "local"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.fail = False

    async def run_node(self, call: NodeCall) -> NodeResult:
        self.clock.advance(42)  # the command took its time
        if self.fail:
            raise NodeFailed("exit code 3: disk full", permanent=True)
        return NodeResult(outputs={"exit_code": 0, "log_url": "https://logs.example/run/7"})


def _policy(itsm_url: str, needs_approval: bool) -> str:
    """The ticket policy plus a local action the same rule starts; approvals on."""
    text = policy_text(itsm_url)
    text = text.replace(
        "rules:",
        EXECUTOR.replace("NEEDS", str(needs_approval).lower()).replace("secrets_unused: {}\n", "")
        + "approval: {enabled: true, require: {expires_in: 600}}\nrules:",
    )
    return text.replace(
        "actions: [{action: open-ticket, signal: [firing]}]",
        "actions: [{action: open-ticket, signal: [firing]}, {action: run-it}]",
    )


@pytest.fixture
async def chatty(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    fakes: Any,
) -> Any:
    telegram, telegram_url, _slack, _slack_url = fakes

    async def build(needs_approval: bool) -> tuple[Heal, Any, Runs]:
        heal: Heal = await make_heal(
            _policy(itsm[1], needs_approval),
            clock=clock,
            telegram_bot_token=BOT_TOKEN,
            telegram_chat_id=CHAT_ID,
            telegram_webhook_secret=WEBHOOK_SECRET,
            telegram_api_url=telegram_url,
        )
        heal.approvals.clock = clock
        heal.chat.clock = clock
        runs = Runs(clock)
        heal.engine.plugins["local"] = runs
        return heal, telegram, runs

    return build  # type: ignore[return-value]


async def _dispatch(heal: Heal) -> None:
    while await heal.chat.run_once():
        pass


async def _run_it(heal: Heal, clock: Clock) -> dict[str, Any]:
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        actions = await incidents_repo.actions_of(connection, report.incident_ids[0])
    [action] = [a for a in actions if a["action_name"] == "run-it"]
    return await drive(heal, clock, action["id"])


@pytest.mark.usefixtures("backend")
async def test_an_executor_result_is_threaded_under_the_incidents_card(
    chatty: Any, clock: Clock
) -> None:
    """The ticket action asked for approval (a card); the local one did not: its result
    is a reply in the card's thread, with duration and link."""
    heal, telegram, _runs = await chatty(needs_approval=False)
    row = await _run_it(heal, clock)
    assert row["status"] == "success"
    await _dispatch(heal)
    [card] = [m for m in telegram.messages.values() if "reply_markup" in m]
    [news] = [m for m in telegram.messages.values() if "local action" in m["text"]]
    assert news["text"] == (
        "local action 'run-it' succeeded in 42 s: local command finished "
        "— https://logs.example/run/7"
    )
    assert news["reply_to_message"]["message_id"] == card["message_id"]


@pytest.mark.usefixtures("backend")
async def test_a_failed_executor_says_why_and_an_approved_one_replies_to_its_own_card(
    chatty: Any, clock: Clock
) -> None:
    heal, telegram, runs = await chatty(needs_approval=True)
    runs.fail = True
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        actions = await incidents_repo.actions_of(connection, report.incident_ids[0])
    [action] = [a for a in actions if a["action_name"] == "run-it"]
    assert action["status"] == "waiting"
    await _dispatch(heal)
    cards = [m for m in telegram.messages.values() if "reply_markup" in m]
    assert [("run-it" in c["text"]) for c in cards] == [False, True]  # one per approval
    async with heal.db.write() as connection:
        await users_repo.add(connection, "alice", "approver", [], clock())
        approval = await approvals_repo.for_action(connection, action["id"])
    assert approval is not None
    alice = Signer("alice", Role.APPROVER, frozenset())
    await heal.approvals.sign(approval["id"], alice, approve=True)
    row = await drive(heal, clock, action["id"])
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    await _dispatch(heal)
    [news] = [m for m in telegram.messages.values() if "local action" in m["text"]]
    assert news["text"] == (
        "local action 'run-it' failed in 42 s: local command: exit code 3: disk full"
    )
    [own_card] = [
        m for m in telegram.messages.values() if "run-it" in m["text"] and "reply_markup" in m
    ]
    assert news["reply_to_message"]["message_id"] == own_card["message_id"]
