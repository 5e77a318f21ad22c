"""The stackstorm action type end to end: policy -> ingest -> wakes -> the real plugin
over HTTP -> a fake st2 API that answers as st2api does (tests/fakes/st2.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HealFactory
from fakes.server import serving
from fakes.st2 import FakeSt2, Plan, create_app
from helpers import Clock, drive, heal_dies_before_commit

from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.policy.executors import StackStormAction
from heal.policy.models import ActionBase
from heal.store import actions_repo, timeline_repo

KEY = "st2-key-123"
TOKEN = "st2-token-456"

POLICY = """
settings:
  st2_url: __URL__
secrets:
  st2_key: {env: ST2_API_KEY}
actions:
  st2-remediate:
    type: stackstorm
    base_url: "{{ settings.st2_url }}"
    auth: {type: __AUTH__, secret: st2_key}
    verify_ssl: true
    request_timeout: 15
    match_on: "{{ alert.annotations.description }}"
    action_map:
      "interface down": network.remediation.enable_interface
      cpu: network.remediation.reduce_cpu
    default_action: network.remediation.generic_fix
    parameters: {host: "{{ alert.labels.instance }}", note: "fix {{ alert.labels.alertname }}"}
    poll_interval: 2
rules:
  - name: network
    match: {alertname: LinkDown}
    actions: [{action: st2-remediate}]
"""


@pytest.fixture
def backend(tmp_path: Path) -> tuple[str, str]:
    """The plugin's behaviour does not depend on the database: SQLite is enough."""
    return f"sqlite+aiosqlite:///{tmp_path}/heal.db", "embedded"


@pytest.fixture
async def st2() -> AsyncIterator[tuple[FakeSt2, str]]:
    fake = FakeSt2()
    async with serving(create_app(fake)) as url:
        yield fake, f"{url}/api/v1"


def link_alert(description: str, instance: str = "sw1:9100") -> Alert:
    labels = {"alertname": "LinkDown", "severity": "critical", "instance": instance}
    return Alert(
        fingerprint=fingerprint_of(labels),
        status=AlertStatus.FIRING,
        labels=labels,
        annotations={"summary": "link down", "description": description},
        starts_at=datetime(2026, 1, 1, 11, 59, tzinfo=UTC),
    )


async def start(
    make_heal: HealFactory,
    clock: Clock,
    url: str,
    description: str,
    *,
    auth: str = "api_key",
    secret: str = KEY,
    policy: str = POLICY,
) -> Any:
    text = policy.replace("__URL__", url).replace("__AUTH__", auth)
    heal = await make_heal(text, clock=clock, environ={"ST2_API_KEY": secret})
    report = await heal.ingest.ingest([link_alert(description)])
    assert report.actions_created == 1
    return heal


async def timeline(heal: Any, action_id: int = 1) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return list(await timeline_repo.for_action(connection, action_id))


def messages(entries: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in entries]


def posts(fake: FakeSt2) -> list[dict[str, Any]]:
    return fake.sent("POST /api/v1/executions")


async def test_the_first_keyword_in_file_order_picks_the_action_and_the_execution_succeeds(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "High CPU after Interface DOWN on eth0")

    row = await drive(heal, clock, 1)

    assert row["status"] == "success"
    [post] = posts(fake)
    # both keywords are in the text: "interface down" comes first in the file
    assert post["body"] == {
        "action": "network.remediation.enable_interface",
        "parameters": {"host": "sw1:9100", "note": "fix LinkDown"},
    }
    assert post["_auth"] == ["St2-Api-Key"]
    [execution] = fake.posted()
    # st2 merged heal's st2-context header into the execution's context
    assert execution.context["user"] == "heal-bot"
    assert execution.context["heal"] == {
        "action_id": 1,
        "action": "st2-remediate",
        "rule": "network",
        "incident_id": 1,
        "idempotency_key": "heal-1-execute-a0-p0",
    }
    assert row["outputs"]["execution_id"] == execution.id
    assert row["outputs"]["web_url"] == execution.web_url
    assert row["outputs"]["status"] == "succeeded"
    assert row["outputs"]["result"] == {"stdout": "interface up", "stderr": "", "exit_code": 0}
    entries = await timeline(heal)
    finished = [e for e in entries if e["kind"] == "node.finished"]
    assert finished[0]["message"] == "st2 execution finished"
    assert finished[0]["data"]["outputs"]["execution_id"] == execution.id
    assert finished[0]["data"]["outputs"]["web_url"].endswith(f"/#/history/{execution.id}/general")
    started = next(e for e in entries if e["kind"] == "node.started")
    assert started["data"]["inputs"]["matched"] == "interface down"


async def test_keywords_match_ignoring_case(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "sustained high Cpu load")
    assert (await drive(heal, clock, 1))["status"] == "success"
    assert [p["body"]["action"] for p in posts(fake)] == ["network.remediation.reduce_cpu"]


async def test_no_keyword_runs_the_default_action(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "fan failure")
    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    assert [p["body"]["action"] for p in posts(fake)] == ["network.remediation.generic_fix"]


async def test_no_keyword_and_no_default_fails_without_calling_st2(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    policy = POLICY.replace("    default_action: network.remediation.generic_fix\n", "").replace(
        "    poll_interval: 2\n",
        "    poll_interval: 2\n    failed_retry: {is_enabled: true, max_retry_times: 2}\n",
    )
    heal = await start(make_heal, clock, url, "fan failure", policy=policy)
    row = await drive(heal, clock, 1)
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"].startswith("st2 execution: no st2 action matched 'fan failure'")
    assert "and there is no default_action" in row["message"]
    assert fake.calls == []  # permanent: not retried, st2 never asked


@pytest.mark.parametrize(
    ("status", "result", "error"),
    [
        (
            "failed",
            {"stdout": "", "stderr": "Traceback ...\nValueError: no eth9", "exit_code": 1},
            "Traceback ...\nValueError: no eth9",
        ),
        ("failed", {"errors": [{"type": "error", "message": "task1 failed"}]}, "task1 failed"),
        (
            "timeout",
            {"error": "Action failed to complete in 60 seconds", "exit_code": -9},
            "Action failed to complete in 60 seconds",
        ),
        ("canceled", {}, "st2 gave no error"),
        ("abandoned", {"exit_code": 137}, "exit code 137"),
    ],
)
async def test_an_execution_that_ends_badly_fails_the_action_with_st2s_error(
    make_heal: HealFactory,
    clock: Clock,
    st2: tuple[FakeSt2, str],
    status: str,
    result: dict[str, Any],
    error: str,
) -> None:
    fake, url = st2
    fake.plans["network.remediation.generic_fix"] = Plan(["running", status], result)
    heal = await start(make_heal, clock, url, "fan failure")
    row = await drive(heal, clock, 1)
    [execution] = fake.posted()
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"] == f"st2 execution result: st2 execution {execution.id} {status}: {error}"
    assert row["outputs"]["status"] == status
    assert row["outputs"]["result"] == result
    gets = fake.sent(f"GET /api/v1/executions/{execution.id}")
    assert len(gets) == 2  # running, then the end: an ended execution is not looked at again


async def test_an_execution_waiting_on_an_inquiry_says_so(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    fake.plans["network.remediation.generic_fix"] = Plan(
        ["running", "pending", "pending", "running", "succeeded"]
    )
    heal = await start(make_heal, clock, url, "fan failure")
    await heal.engine.wake(1, 0)  # execute
    await heal.engine.wake(1, 1)  # running
    clock.advance(10)
    await heal.engine.wake(1, 2)  # pending
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, 1)
    assert row is not None
    assert (row["status"], row["outputs"]["state"]) == ("running", "waiting on an st2 inquiry")
    assert "st2 execution result: waiting on an st2 inquiry" in messages(await timeline(heal))

    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    said = [m for m in messages(await timeline(heal)) if m.startswith("st2 execution result:")]
    # the timeline tells each change of state once, not every poll
    assert said == [
        "st2 execution result: st2 execution running",
        "st2 execution result: waiting on an st2 inquiry",
        "st2 execution result: st2 execution running",
    ]


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        ("api_key", "St2-Api-Key", "st2 refused the API key (401: Unauthorized - ApiKey with"),
        ("auth_token", "X-Auth-Token", "st2 refused the auth token (401: Unauthorized)"),
    ],
)
async def test_a_refused_credential_fails_at_once_with_st2s_reason(
    make_heal: HealFactory,
    clock: Clock,
    st2: tuple[FakeSt2, str],
    auth: str,
    header: str,
    expected: str,
) -> None:
    fake, url = st2
    wrong = "not-the-secret-9f8e7d"
    policy = POLICY.replace(
        "    poll_interval: 2\n",
        "    poll_interval: 2\n    failed_retry: {is_enabled: true, max_retry_times: 3}\n",
    )
    heal = await start(make_heal, clock, url, "fan failure", auth=auth, secret=wrong, policy=policy)
    row = await drive(heal, clock, 1)
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"].startswith(f"st2 execution: {expected}")
    assert len(fake.calls) == 1  # permanent: no retry, and no POST after the refusal
    assert fake.calls[0].payload["_auth"] == [header]
    everything = json.dumps([row["outputs"], row["message"], await timeline(heal)], default=str)
    assert wrong not in everything


async def test_an_auth_token_goes_in_x_auth_token(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "fan failure", auth="auth_token", secret=TOKEN)
    assert (await drive(heal, clock, 1))["status"] == "success"
    assert {tuple(c.payload["_auth"]) for c in fake.calls} == {("X-Auth-Token",)}


async def test_an_unknown_st2_action_fails_at_once_saying_so(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    fake.actions.discard("network.remediation.generic_fix")
    heal = await start(make_heal, clock, url, "fan failure")
    row = await drive(heal, clock, 1)
    assert row["message"] == (
        "st2 execution: st2 action network.remediation.generic_fix not found "
        '(400: Action "network.remediation.generic_fix" cannot be found.)'
    )
    assert fake.posted() == []


async def test_the_secret_never_reaches_the_timeline_or_the_outputs(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "interface down")
    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    async with heal.db.read() as connection:
        stored = await actions_repo.load(connection, 1)
    everything = json.dumps([stored, await timeline(heal)], default=str)
    assert KEY not in everything
    assert all(c.payload["_auth"] == ["St2-Api-Key"] for c in fake.calls)  # it was sent


async def test_cancelling_the_action_deletes_the_st2_execution(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    fake.plans["network.remediation.generic_fix"] = Plan(["running"])
    heal = await start(make_heal, clock, url, "fan failure")
    await heal.engine.wake(1, 0)  # execute
    await heal.engine.wake(1, 1)  # running
    result = await heal.engine.cancel(1, who="alice", reason="wrong host")
    assert result.cancelled
    [execution] = fake.posted()
    assert fake.sent(f"DELETE /api/v1/executions/{execution.id}") != []
    assert execution.status == "canceling"
    entries = messages(await timeline(heal))
    assert entries[-1] == f"st2 execution {execution.id} cancelled"
    assert "action 'st2-remediate' failure/user_abort: cancelled by alice: wrong host" in entries


async def test_cancelling_an_execution_that_already_ended_says_why_not(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "fan failure")
    await heal.engine.wake(1, 0)  # execute
    [execution] = fake.posted()
    execution.status = "succeeded"  # st2 finished it; heal has not looked yet
    assert (await heal.engine.cancel(1, who="alice")).cancelled
    assert messages(await timeline(heal))[-1] == (
        f"st2 execution {execution.id} not cancelled: Action cannot be canceled. State = succeeded."
    )


async def test_a_crash_after_the_post_does_not_start_the_st2_action_twice(
    make_heal: HealFactory,
    clock: Clock,
    st2: tuple[FakeSt2, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "interface down")

    # The POST reached st2, then heal could not commit the execution id.
    with heal_dies_before_commit(heal, monkeypatch):
        await heal.engine.wake(1, 0)
    [execution] = fake.posted()
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, 1)
    assert row is not None
    assert (row["status"], row["outputs"]) == ("received", {})  # nothing of the run was kept

    row = await drive(heal, clock, 1)  # the restarted heal wakes it again

    assert row["status"] == "success"
    assert fake.posted() == [execution]  # found by its st2-context, not posted again
    assert len(posts(fake)) == 1
    assert (row["outputs"]["execution_id"], row["outputs"]["adopted"]) == (execution.id, True)


async def test_an_execution_of_the_same_st2_action_by_someone_else_is_not_adopted(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    ref = "network.remediation.enable_interface"
    # a person, and another heal whose action 1 belongs to another incident
    foreign = {"action_id": 1, "action": "st2-remediate", "incident_id": 99}
    async with httpx.AsyncClient(headers={"St2-Api-Key": KEY}) as client:
        for context in ({}, {"heal": {**foreign, "idempotency_key": "heal-1-execute-a0-p0"}}):
            answer = await client.post(
                f"{url}/executions",
                json={"action": ref, "parameters": {}},
                headers={"st2-context": json.dumps(context)},
            )
            assert answer.status_code == 201
    heal = await start(make_heal, clock, url, "interface down")
    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    assert len(fake.posted()) == 3
    assert "adopted" not in row["outputs"]
    assert row["outputs"]["execution_id"] == fake.posted()[-1].id


def test_every_stackstorm_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "executors.md").read_text()
    section = doc[doc.index("## StackStorm") : doc.index("## Fallback")]
    own = set(StackStormAction.model_fields) - set(ActionBase.model_fields) - {"type"}
    keys = {"auth.type", "auth.secret", "fallback"} | (own - {"auth"})
    assert [key for key in sorted(keys) if f"| `{key}` |" not in section] == []


async def test_a_retry_after_a_lost_answer_adopts_the_execution_st2_started(
    make_heal: HealFactory, clock: Clock, st2: tuple[FakeSt2, str]
) -> None:
    fake, url = st2
    fake.lose_answers = 1  # st2 started it, heal saw a 502
    policy = POLICY.replace(
        "    poll_interval: 2\n",
        "    poll_interval: 2\n    failed_retry: {is_enabled: true, max_retry_times: 2}\n",
    )
    heal = await start(make_heal, clock, url, "interface down", policy=policy)
    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    [execution] = fake.posted()
    assert len(posts(fake)) == 1
    assert (row["outputs"]["execution_id"], row["outputs"]["adopted"]) == (execution.id, True)
    said = messages(await timeline(heal))
    assert any("answered HTTP 502: Bad Gateway" in m for m in said)


async def test_cancelling_after_a_crash_after_the_post_still_deletes_the_execution(
    make_heal: HealFactory,
    clock: Clock,
    st2: tuple[FakeSt2, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = st2
    heal = await start(make_heal, clock, url, "interface down")

    with heal_dies_before_commit(heal, monkeypatch):
        await heal.engine.wake(1, 0)
    # heal never stored the id; a person cancels before the next wake
    assert (await heal.engine.cancel(1, who="alice")).cancelled
    [execution] = fake.posted()
    assert execution.status == "canceling"
    assert messages(await timeline(heal))[-1] == f"st2 execution {execution.id} cancelled"
