"""The step engine on both databases: the node language end to end against a fake ITSM."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import HealFactory
from helpers import Clock, PluginStub, alert, drive, policy_text
from log_capture import captured_logs
from sqlalchemy.exc import IntegrityError, OperationalError

from heal.demo.itsm import FakeITSM
from heal.engine import engine as engine_module
from heal.engine.interfaces import NodeCall, NodeResult
from heal.store import actions_repo, timeline_repo

pytestmark = pytest.mark.usefixtures("itsm")
FIELDS_INPUT = (
    '          - {key: fields, value: "execute_config.template_detail[].{key: key, value: value}",'
    " format: jmespath}"
)


async def _one_action(heal: Any) -> int:
    report = await heal.ingest.ingest([alert()])
    assert report.actions_created == 1
    async with heal.db.read() as connection:
        actions = await actions_repo.in_flight(connection, ["1:checkout-down:open-ticket"])
    return actions["1:checkout-down:open-ticket"]


async def _timeline(heal: Any, action_id: int) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return await timeline_repo.for_action(connection, action_id)


async def test_ticket_is_created_polled_and_succeeds(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)
    row = await drive(heal, clock, action_id)

    assert (row["status"], row["failure_type"]) == ("success", None)
    assert fake.tickets_created == 1
    sn = row["outputs"]["sn"]
    assert row["outputs"]["url"] == f"{url}/ticket/{sn}"
    assert row["outputs"]["current_status"] == "FINISHED"
    ticket = fake.tickets[sn]
    assert ticket.title == "CheckoutDown on checkout"  # template_detail rendered from the alert
    polls = fake.requests_to("/get_ticket_status/")
    assert len(polls) == 2
    assert {p.idempotency_key for p in polls} == {
        f"heal-{action_id}-schedule-a0-p0",
        f"heal-{action_id}-schedule-a0-p1",
    }
    kinds = [e["kind"] for e in await _timeline(heal, action_id)]
    assert kinds == [
        "action.created",
        "action.status",
        "node.started",
        "node.finished",
        "node.log",
        "node.started",
        "node.finished",
        "action.status",
    ]
    events = await _timeline(heal, action_id)
    assert events[4]["message"] == f"Ticket {sn} created"
    assert events[2]["data"]["inputs"]["fields"] == [
        {"key": "title", "value": "CheckoutDown on checkout"}
    ]
    assert (row["timeout_at"] - row["started_at"]).total_seconds() == 600  # policy's timeout


async def test_polls_are_spaced_by_schedule_timedelta(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    fake.finish_after_polls = 3
    heal = await make_heal(
        policy_text(url, **{"schedule_timedelta: 2": "schedule_timedelta: 7"}), clock=clock
    )
    action_id = await _one_action(heal)
    start = clock.now
    await drive(heal, clock, action_id)
    # create at t0, first poll right after, then two more 7 s apart
    assert (clock.now - start).total_seconds() == pytest.approx(14)


async def test_api_error_is_retried_and_then_succeeds(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    fake.fail_create_times = 1
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)
    row = await drive(heal, clock, action_id)

    assert row["status"] == "success"
    assert fake.tickets_created == 1
    events = await _timeline(heal, action_id)
    failed = [e for e in events if e["kind"] == "node.failed"]
    assert len(failed) == 1
    assert "HTTP 500" in failed[0]["message"]
    assert "ITSM unavailable" in failed[0]["message"]
    retries = [e for e in events if e["kind"] == "node.retry"]
    assert [e["message"] for e in retries] == ["retry 1 of 2 in 5 s"]
    keys = [r.idempotency_key for r in fake.requests_to("/create_ticket/")]
    assert len(set(keys)) == 2  # a retry is a new attempt with a new key


async def test_envelope_error_fails_with_the_servers_message_after_retries(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    fake.envelope_error_times = 10
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)
    row = await drive(heal, clock, action_id)

    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert "service_id invalid" in row["message"]
    assert len(fake.requests_to("/create_ticket/")) == 3  # first try + max_retry_times 2


async def test_retry_disabled_fails_at_once(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    fake.fail_create_times = 1
    heal = await make_heal(
        policy_text(url, **{"is_enabled: true": "is_enabled: false"}), clock=clock
    )
    row = await drive(heal, clock, await _one_action(heal))
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert len(fake.requests_to("/create_ticket/")) == 1


async def test_unsuccessful_finish_is_a_failure(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    fake.approve = False
    heal = await make_heal(
        policy_text(url, **{"max_retry_times: 2": "max_retry_times: 0"}), clock=clock
    )
    row = await drive(heal, clock, await _one_action(heal))
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert "success_rule not met: approve_result equal True (got False)" in row["message"]


async def test_timeout_ends_the_action_and_is_never_retried(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    fake.finish_after_polls = 10**6
    heal = await make_heal(
        policy_text(
            url,
            **{"timeout: 600": "timeout: 60", "schedule_timedelta: 2": "schedule_timedelta: 25"},
        ),
        clock=clock,
    )
    action_id = await _one_action(heal)
    row = await drive(heal, clock, action_id)

    assert (row["status"], row["failure_type"]) == ("failure", "timeout")
    assert row["next_wake_at"] is None
    assert row["inflight_key"] is None
    assert (row["finished_at"] - row["started_at"]).total_seconds() == pytest.approx(60)
    assert not [e for e in await _timeline(heal, action_id) if e["kind"] == "node.retry"]


class _FlakyPlugin(PluginStub):
    """A plugin with a bug: raises ``errors`` times, then answers like the ITSM would."""

    type = "http"

    def __init__(self, errors: int) -> None:
        self.errors = errors
        self.calls = 0

    async def run_node(self, call: NodeCall) -> NodeResult:
        self.calls += 1
        if self.calls <= self.errors:
            raise RuntimeError("boom in plugin code")
        if call.node.function == "create_task":
            return NodeResult(outputs={"sn": "X1"})
        return NodeResult(outputs={"current_status": "FINISHED", "approve_result": True})


@pytest.mark.parametrize(
    ("errors", "status", "calls"),
    [
        (2, "success", 4),  # two internal errors, retried, then both nodes succeed
        (10, "failure", 4),  # first try + 3 retries, then framework_code_failure
    ],
)
async def test_internal_errors_are_retried_three_times_five_seconds_apart(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    errors: int,
    status: str,
    calls: int,
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    plugin = _FlakyPlugin(errors)
    heal.engine.plugins["http"] = plugin
    action_id = await _one_action(heal)
    start = clock.now
    row = await drive(heal, clock, action_id)

    assert row["status"] == status
    assert plugin.calls == calls
    if status == "failure":
        assert row["failure_type"] == "framework_code_failure"
        assert "RuntimeError: boom in plugin code" in row["message"]
        assert (clock.now - start).total_seconds() == pytest.approx(15)


async def test_cancel_wins_over_a_result_that_arrives_late(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    gate = asyncio.Event()
    entered = asyncio.Event()

    class SlowPlugin(PluginStub):
        type = "http"

        async def run_node(self, call: NodeCall) -> NodeResult:
            entered.set()
            await gate.wait()
            return NodeResult(outputs={"sn": "LATE"})

    heal.engine.plugins["http"] = SlowPlugin()
    action_id = await _one_action(heal)
    wake = asyncio.create_task(heal.engine.wake(action_id, 0))
    await entered.wait()
    result = await heal.engine.cancel(action_id, who="tester", reason="wrong service")
    assert result.cancelled
    gate.set()
    await wake

    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, action_id)
    assert row is not None
    assert (row["status"], row["failure_type"]) == ("failure", "user_abort")
    assert row["outputs"] == {}  # the late result was not applied
    assert row["message"] == "cancelled by tester: wrong service"
    kinds = [e["kind"] for e in await _timeline(heal, action_id)]
    assert kinds[-1] == "node.stale_result"
    again = await heal.engine.cancel(action_id, who="tester")
    assert not again.cancelled


async def test_a_replayed_wake_after_a_crash_reuses_the_idempotency_key(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """heal dies after the ticket was created but before it recorded that: the replay
    sends the same Idempotency-Key, and the ITSM answers with the same ticket."""
    fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)
    real_update = actions_repo.update_if_version

    async def crash(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("power cut")

    monkeypatch.setattr(actions_repo, "update_if_version", crash)
    heal.engine.commit_retry = 0  # the process dies: nothing tries the commit again
    with pytest.raises(ConnectionError):
        await heal.engine.wake(action_id, 0)
    monkeypatch.setattr(actions_repo, "update_if_version", real_update)
    assert fake.tickets_created == 1

    row = await drive(heal, clock, action_id)
    assert row["status"] == "success"
    assert fake.tickets_created == 1
    creates = fake.requests_to("/create_ticket/")
    assert len(creates) == 2
    assert (
        creates[0].idempotency_key
        == creates[1].idempotency_key
        == (f"heal-{action_id}-create_task-a0-p0")
    )


async def test_a_commit_lost_to_the_database_is_retried_and_the_node_is_not_run_again(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ticket was created, then the database went away for two commits: the wake keeps
    the node's result and commits it when the database is back; one request, not two."""
    fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)
    real_update = actions_repo.update_if_version
    lost = 0

    async def flaky(*args: Any, **kwargs: Any) -> bool:
        nonlocal lost
        if lost < 2:
            lost += 1
            raise OperationalError("UPDATE actions", {}, Exception("database is locked"))
        return await real_update(*args, **kwargs)

    monkeypatch.setattr(actions_repo, "update_if_version", flaky)
    monkeypatch.setattr(engine_module, "COMMIT_RETRY_DELAYS", (0.01,))
    with captured_logs() as logs:
        await heal.engine.wake(action_id, 0)

    assert len(fake.requests_to("/create_ticket/")) == 1
    retries = logs.lines("commit failed; retrying")
    assert [(r["action_id"], r["attempt"]) for r in retries] == [(action_id, 1), (action_id, 2)]
    events = await _timeline(heal, action_id)
    [note] = [e for e in events if e["kind"] == "action.commit_retried"]
    assert note["message"].startswith("the step's result was stored after 2 failed attempts")
    assert "database is locked" in note["message"]
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, action_id)
    assert row is not None
    assert (row["version"], row["current_node"]) == (1, "schedule")
    assert "sn" in row["outputs"]


async def test_a_commit_that_keeps_failing_gives_up_when_the_wake_is_no_longer_held(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the runtime's hold (its lease) the wake gives up and raises, so the lease
    running out brings it back rather than two holders committing the same step."""
    _fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("UPDATE actions", {}, Exception("connection refused"))

    monkeypatch.setattr(actions_repo, "update_if_version", down)
    monkeypatch.setattr(engine_module, "COMMIT_RETRY_DELAYS", (0.05,))
    # Held for 1 s from the wake's start (the node's request comes first): a handful of
    # retries 0.05 s apart, then the wake gives up rather than outlive its hold.
    with captured_logs() as logs, pytest.raises(OperationalError):
        await heal.engine.wake(action_id, 0, held_for=1.0)
    assert 1 <= len(logs.lines("commit failed; retrying")) <= 20
    assert len(logs.lines("wake failed")) == 1


async def test_a_commit_refused_for_a_bug_is_not_retried(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)

    async def broken(*args: Any, **kwargs: Any) -> bool:
        raise IntegrityError("UPDATE actions", {}, Exception("CHECK constraint failed"))

    monkeypatch.setattr(actions_repo, "update_if_version", broken)
    with captured_logs() as logs, pytest.raises(IntegrityError):
        await heal.engine.wake(action_id, 0)
    assert logs.lines("commit failed; retrying") == []
    assert fake.tickets_created == 1


async def test_duplicate_and_stale_wakes_do_nothing(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    heal = await make_heal(policy_text(url), clock=clock)
    action_id = await _one_action(heal)
    await heal.engine.wake(action_id, 0)
    await heal.engine.wake(action_id, 0)  # redelivered: version has moved on
    await heal.engine.wake(action_id, 99)  # never existed
    assert len(fake.requests_to("/create_ticket/")) == 1
    row = await drive(heal, clock, action_id)
    await heal.engine.wake(action_id, row["version"])  # terminal: nothing is due
    assert fake.tickets_created == 1
    assert len(fake.requests) == 3


async def test_secrets_never_reach_the_timeline_or_outputs(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    secret = "s3cr3t-itsm-token-value"
    fake.token = secret
    policy = (
        policy_text(url)
        .replace(
            'request: {url: "{{ settings.itsm_url }}/create_ticket/", method: POST}',
            'request: {url: "{{ settings.itsm_url }}/create_ticket/", method: POST, '
            "auth: {type: bearer, secret: itsm_token}}",
        )
        .replace(
            'request: {url: "{{ settings.itsm_url }}/get_ticket_status/", method: GET}',
            'request: {url: "{{ settings.itsm_url }}/get_ticket_status/", method: GET, '
            'headers: {Authorization: "Bearer {{ secrets.itsm_token }}"}}',
        )
        .replace(
            FIELDS_INPUT,
            FIELDS_INPUT + '\n          - {key: echo, value: "token={{ secrets.itsm_token }}", '
            "format: jinja2}",
        )
    )
    heal = await make_heal(policy, clock=clock, environ={"HEAL_TEST_ITSM_TOKEN": secret})
    action_id = await _one_action(heal)
    row = await drive(heal, clock, action_id)

    assert row["status"] == "success"  # the secret was sent where it was needed
    events = await _timeline(heal, action_id)
    started = next(e for e in events if e["kind"] == "node.started")
    assert started["data"]["inputs"]["echo"] == "token=***"
    assert secret not in repr(events)
    assert secret not in repr(row)
