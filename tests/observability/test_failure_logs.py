"""Failures an operator must see: one structured, redacted line in the server log each."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import HealFactory
from helpers import Clock, PluginStub, alert, drive, policy_text
from log_capture import captured_logs

from heal.demo.itsm import FakeITSM
from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult
from heal.store import actions_repo

SECRET = "s3cr3t-itsm-token-in-a-log"


class _Refusing(PluginStub):
    """An ITSM that echoes the token it was sent into its error, every time."""

    type = "http"

    async def run_node(self, call: NodeCall) -> NodeResult:
        raise NodeFailed(f"HTTP 500: token {call.secrets['itsm_token']} rejected")


class _Buggy(PluginStub):
    type = "http"

    async def run_node(self, call: NodeCall) -> NodeResult:
        raise RuntimeError(f"bug with {call.secrets['itsm_token']} in hand")


async def _heal_with(make_heal: HealFactory, url: str, clock: Clock, plugin: Any) -> Any:
    heal = await make_heal(policy_text(url), clock=clock, environ={"HEAL_TEST_ITSM_TOKEN": SECRET})
    heal.engine.plugins["http"] = plugin
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        actions = await actions_repo.in_flight(connection, ["1:checkout-down:open-ticket"])
    assert report.actions_created == 1
    return heal, actions["1:checkout-down:open-ticket"]


async def test_an_action_failing_after_its_retries_logs_one_redacted_line(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    with captured_logs() as logs:
        heal, action_id = await _heal_with(make_heal, itsm[1], clock, _Refusing())
        row = await drive(heal, clock, action_id)

    assert row["status"] == "failure"
    [line] = logs.lines("action failed")
    assert line["level"] == "error"
    assert line["action_id"] == action_id
    assert (line["rule"], line["action"]) == ("checkout-down", "open-ticket")
    assert line["failure_type"] == "execute_failure"
    assert line["reason"] == "Create ticket: HTTP 500: token *** rejected"
    assert SECRET not in logs.text


async def test_a_plugin_bug_logs_each_raise_and_the_final_failure(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    with captured_logs() as logs:
        heal, action_id = await _heal_with(make_heal, itsm[1], clock, _Buggy())
        await drive(heal, clock, action_id)

    raised = logs.lines("node raised")
    assert len(raised) == 4  # the first try and three framework retries
    assert {(r["action_id"], r["rule"], r["node"]) for r in raised} == {
        (action_id, "checkout-down", "create_task")
    }
    assert raised[0]["reason"] == "RuntimeError: bug with *** in hand"
    [failed] = logs.lines("action failed")
    assert failed["failure_type"] == "framework_code_failure"
    assert SECRET not in logs.text


async def test_an_exception_escaping_a_wake_logs_one_line(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock, environ={"HEAL_TEST_ITSM_TOKEN": SECRET})
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        [action_id] = (
            await actions_repo.in_flight(connection, ["1:checkout-down:open-ticket"])
        ).values()
    assert report.actions_created == 1

    async def lost(*_args: Any, **_kwargs: Any) -> bool:
        raise ConnectionError(f"server closed the connection (password {SECRET})")

    monkeypatch.setattr(actions_repo, "update_if_version", lost)
    heal.engine.commit_retry = 0  # the connection stays lost
    with captured_logs() as logs, pytest.raises(ConnectionError):
        await heal.engine.wake(action_id, 0)  # as the distributed runtime calls it

    [line] = logs.lines("wake failed")
    assert line["level"] == "error"
    assert (line["action_id"], line["rule"]) == (action_id, "checkout-down")
    assert line["reason"] == "ConnectionError: server closed the connection (password ***)"
    assert "Traceback" in line["exception"]
    assert SECRET not in logs.text
    assert fake.tickets_created == 1


async def test_a_cancel_logs_who_cancelled_and_why(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(policy_text(itsm[1]), clock=clock)
    await heal.ingest.ingest([alert()])
    with captured_logs() as logs:
        assert (await heal.engine.cancel(1, who="alice", reason="wrong service")).cancelled
        assert not (await heal.engine.cancel(1, who="bob")).cancelled  # already ended
    [line] = logs.lines("action cancelled")
    assert (line["action_id"], line["rule"], line["by"]) == (1, "checkout-down", "alice")
    assert line["reason"] == "wrong service"
