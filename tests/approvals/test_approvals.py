"""Approvals end to end: policy, quorum, separation of duties, expiry, races, silences."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import HealFactory
from helpers import Clock, alert, drive, policy_text
from sqlalchemy import func, select

from heal.api.app import create_app
from heal.app import Heal
from heal.approvals.service import ApprovalClosed
from heal.demo.itsm import FakeITSM
from heal.domain.approvals import Role, Signer, SignRefused
from heal.engine.engine import utcnow
from heal.settings import hash_token
from heal.store import actions_repo, approvals_repo, incidents_repo, timeline_repo, users_repo
from heal.store.tables import approval_signatures, notifications

APPROVAL = """
approval:
  enabled: true
  sweep_batch: 2
  require: {required_signatures: %d, approver_groups: [sre], expires_in: 600}
  auto_approve:
    - {name: staging-low-risk, max_risk: low, labels: {environment: staging}}
"""


async def _heal(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    quorum: int = 1,
    extra: str = "",
) -> Heal:
    _, url = itsm
    heal: Heal = await make_heal(policy_text(url) + APPROVAL % quorum + extra, clock=clock)
    heal.approvals.clock = clock
    return heal


async def _user(
    heal: Heal, name: str, role: str = "approver", groups: tuple[str, ...] = ("sre",)
) -> tuple[Signer, str]:
    token = f"token-of-{name}"
    async with heal.db.write() as connection:
        user_id = await users_repo.add(connection, name, role, list(groups), heal.engine.clock())
        await users_repo.add_token(
            connection, user_id, hash_token(token), "test", heal.engine.clock()
        )
    return Signer(name, Role.parse(role), frozenset(groups)), token


async def _waiting(heal: Heal, **labels: str) -> tuple[int, int]:
    report = await heal.ingest.ingest([alert(**labels)])
    assert report.actions_created == 1
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
        approval = await approvals_repo.for_action(connection, action["id"])
    assert approval is not None
    return action["id"], approval["id"]


async def _action(heal: Heal, action_id: int) -> dict[str, Any]:
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, action_id)
    assert row is not None
    return row


def _client(heal: Heal, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False)),
        base_url="http://heal",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_an_action_that_needs_approval_waits_and_runs_once_approved(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, _ = itsm
    heal = await _heal(make_heal, itsm, clock)
    action_id, approval_id = await _waiting(heal)
    row = await _action(heal, action_id)
    assert row["status"] == "waiting"
    assert row["approval_expires_at"] == clock.now + timedelta(seconds=600)
    await heal.engine.wake(action_id, row["version"])  # nothing is due before the expiry
    assert fake.requests == []
    async with heal.db.read() as connection:
        cards = (await connection.execute(select(notifications.c.kind))).scalars().all()
    assert cards == ["card"]

    _, token = await _user(heal, "alice")
    async with _client(heal, token) as client:
        pending = (await client.get("/api/v1/approvals", params={"status": "pending"})).json()
        assert [a["id"] for a in pending["items"]] == [approval_id]
        answer = await client.post(
            f"/api/v1/approvals/{approval_id}/approve", json={"comment": "go ahead"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "id": approval_id,
            "status": "approved",
            "action_status": "received",
            "signatures": 1,
            "required_signatures": 1,
        }
        again = await client.post(f"/api/v1/approvals/{approval_id}/approve")
        assert again.status_code == 409
        detail = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
        assert detail["signatures"][0]["signer"] == "alice"
        assert detail["archived_at"] is not None
    done = await drive(heal, clock, action_id)
    assert done["status"] == "success"
    assert fake.tickets_created == 1
    async with heal.db.read() as connection:
        messages = [e["message"] for e in await timeline_repo.for_action(connection, action_id)]
    assert any("approval #" in m and "requested" in m for m in messages)
    assert any(m.startswith("approved by alice via api (1 of 1): go ahead") for m in messages)


async def test_reject_skips_the_action_with_the_reason(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    action_id, approval_id = await _waiting(heal)
    _, token = await _user(heal, "bob")
    async with _client(heal, token) as client:
        answer = await client.post(
            f"/api/v1/approvals/{approval_id}/reject", json={"comment": "wrong service"}
        )
    assert answer.json()["action_status"] == "skipped"
    row = await _action(heal, action_id)
    assert (row["status"], row["message"]) == ("skipped", "rejected by bob via api: wrong service")
    assert row["next_wake_at"] is None


async def test_quorum_needs_two_different_people(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, quorum=2)
    action_id, approval_id = await _waiting(heal)
    alice, _ = await _user(heal, "alice")
    bob, _ = await _user(heal, "bob")
    first = await heal.approvals.sign(approval_id, alice, approve=True)
    assert (first.approval_status.value, first.signatures, first.required) == ("pending", 1, 2)
    assert (await _action(heal, action_id))["status"] == "waiting"
    with pytest.raises(SignRefused, match="already signed"):
        await heal.approvals.sign(approval_id, alice, approve=True)
    second = await heal.approvals.sign(approval_id, bob, approve=True)
    assert second.approval_status.value == "approved"
    assert (await _action(heal, action_id))["status"] == "received"


@pytest.mark.parametrize(
    ("name", "role", "groups", "reason"),
    [
        ("victor", "viewer", ("sre",), "is a viewer"),
        ("olga", "operator", ("sre",), "is an operator"),
        ("dave", "approver", ("dev",), "none of the approver groups"),
        ("heal", "approver", ("sre",), "separation of duties"),
    ],
)
async def test_who_may_not_approve_gets_403(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    name: str,
    role: str,
    groups: tuple[str, ...],
    reason: str,
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    action_id, approval_id = await _waiting(heal)
    _, token = await _user(heal, name, role, groups)
    async with _client(heal, token) as client:
        answer = await client.post(f"/api/v1/approvals/{approval_id}/approve")
    assert answer.status_code == 403
    assert reason in answer.json()["detail"]
    assert (await _action(heal, action_id))["status"] == "waiting"
    async with heal.db.read() as connection:
        count = (
            await connection.execute(select(func.count()).select_from(approval_signatures))
        ).scalar()
    assert count == 0


async def test_unanswered_approval_expires_and_leaves_the_incident_to_its_alerts(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, _ = itsm
    heal = await _heal(make_heal, itsm, clock)
    action_id, approval_id = await _waiting(heal)
    row = await drive(heal, clock, action_id)  # the only wake due is the expiry
    assert (row["status"], row["message"]) == ("skipped", "approval expired (disposition: timeout)")
    assert fake.requests == []
    async with heal.db.read() as connection:
        approval = await approvals_repo.get(connection, approval_id)
        incident = await incidents_repo.get(connection, row["incident_id"])
    assert approval is not None
    assert incident is not None
    assert (approval["status"], approval["reason"]) == ("expired", "timeout")
    assert approval["archived_at"] == clock.now
    assert (incident["status"], incident["resolution"]) == ("open", None)  # its alert fires
    alice, _ = await _user(heal, "alice")
    with pytest.raises(ApprovalClosed):
        await heal.approvals.sign(approval_id, alice, approve=True)


async def test_sweeper_expires_in_batches_and_is_idempotent(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    await heal.ingest.ingest([alert(service=f"s{i}") for i in range(5)])
    clock.advance(601)
    assert await heal.sweep_expired_approvals() == 5  # three batches of at most 2
    assert await heal.sweep_expired_approvals() == 0
    async with heal.db.read() as connection:
        rows = await approvals_repo.page(connection, None, 10)
    assert {r["status"] for r in rows} == {"expired"}


async def test_approve_racing_the_expiry_has_exactly_one_outcome(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    alice, _ = await _user(heal, "alice")
    for trial in range(6):
        action_id, approval_id = await _waiting(heal, service=f"race-{trial}")
        expires = (await _action(heal, action_id))["approval_expires_at"]
        # The approver's clock says "just in time", the engine's says "expired".
        heal.approvals.clock = lambda e=expires: e - timedelta(milliseconds=1)
        heal.engine.clock = lambda e=expires: e
        outcome = await asyncio.gather(
            heal.approvals.sign(approval_id, alice, approve=True),
            heal.engine.wake(action_id, 0),
            return_exceptions=True,
        )
        row = await _action(heal, action_id)
        async with heal.db.read() as connection:
            approval = await approvals_repo.get(connection, approval_id)
        assert approval is not None
        if isinstance(outcome[0], Exception):  # the expiry won
            assert (row["status"], approval["status"]) == ("skipped", "expired")
        else:  # the approval won; the expiry wake found nothing to do
            assert (row["status"], approval["status"]) == ("received", "approved")
    heal.approvals.clock = heal.engine.clock = clock


async def test_two_approvers_at_once_with_quorum_two_approve_once(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, quorum=2)
    alice, _ = await _user(heal, "alice")
    bob, _ = await _user(heal, "bob")
    action_id, approval_id = await _waiting(heal)
    results = await asyncio.gather(
        heal.approvals.sign(approval_id, alice, approve=True),
        heal.approvals.sign(approval_id, bob, approve=True),
    )
    assert sorted(r.approval_status.value for r in results) == ["approved", "pending"]
    row = await _action(heal, action_id)
    assert (row["status"], row["version"]) == ("received", 1)  # moved exactly once


async def test_auto_approve_conditions(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    low = policy_text(url).replace("    type: http\n", "    type: http\n    risk: low\n", 1)
    heal = await make_heal(low + APPROVAL % 1, clock=clock)
    staging = await heal.ingest.ingest([alert(environment="staging")])
    production = await heal.ingest.ingest([alert(environment="production", service="pay")])
    async with heal.db.read() as connection:
        (auto,) = await incidents_repo.actions_of(connection, staging.incident_ids[0])
        (asked,) = await incidents_repo.actions_of(connection, production.incident_ids[0])
        events = await timeline_repo.for_action(connection, auto["id"])
    assert (auto["status"], asked["status"]) == ("received", "waiting")
    assert any(
        "auto-approved by condition 'staging-low-risk': risk low ≤ low, labels match"
        in e["message"]
        for e in events
    )


async def test_auto_approve_by_measured_success_rate(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    extra = """    - {name: proven, min_success_rate: 0.75, min_runs: 2}
"""
    heal = await _heal(make_heal, itsm, clock, extra=extra)
    # Two runs: approve and drive both to success, so the history is 2 of 2.
    alice, _ = await _user(heal, "alice")
    for i in range(2):
        action_id, approval_id = await _waiting(heal, service=f"h{i}")
        await heal.approvals.sign(approval_id, alice, approve=True)
        assert (await drive(heal, clock, action_id))["status"] == "success"
    report = await heal.ingest.ingest([alert(service="third")])
    async with heal.db.read() as connection:
        (third,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
    assert third["status"] == "received"


async def test_a_silence_shields_matching_alerts_and_names_itself(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    _, token = await _user(heal, "olga", "operator")
    async with _client(heal, token) as client:
        made = await client.post(
            "/api/v1/silences",
            json={
                "matchers": {"service": "checkout", "alertname": "=~Checkout.*"},
                "duration": 3600,
                "comment": "deploy window",
            },
        )
        assert made.status_code == 201, made.text
        bad = await client.post(
            "/api/v1/silences",
            json={"matchers": {"service": "=~("}, "duration": 60, "comment": "x"},
        )
        assert bad.status_code == 422
        listed = (await client.get("/api/v1/silences")).json()
        assert [s["comment"] for s in listed] == ["deploy window"]
    # The silence was made "now" by the API's real clock; ingest checks it at that time.
    heal.ingest.clock = utcnow
    shielded = await heal.ingest.ingest([alert()])
    other = await heal.ingest.ingest([alert(service="payments")])
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, shielded.incident_ids[0])
        (free,) = await incidents_repo.actions_of(connection, other.incident_ids[0])
        events = await timeline_repo.for_action(connection, action["id"])
        cards = (await connection.execute(select(func.count()).select_from(notifications))).scalar()
    assert action["status"] == "shield"
    assert action["message"].startswith(
        f"silenced by silence #{made.json()['id']} (deploy window, by olga)"
    )
    assert any("silenced by silence" in e["message"] for e in events)
    assert free["status"] == "waiting"
    assert cards == 1  # only the unsilenced action asked for approval


async def test_operators_cannot_silence_as_viewers(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    _, token = await _user(heal, "vera", "viewer")
    async with _client(heal, token) as client:
        answer = await client.post(
            "/api/v1/silences", json={"matchers": {"a": "b"}, "duration": 60, "comment": "x"}
        )
        assert answer.status_code == 403
        assert (await client.get("/api/v1/silences")).status_code == 200
        ingest = await client.post(
            "/api/v1/alerts", json=[{"labels": {"a": "b"}, "starts_at": "2026-01-01T00:00:00Z"}]
        )
        assert ingest.status_code == 403
