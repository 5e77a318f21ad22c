"""An approval ends when its action can no longer run; expiry leaves incidents to alerts."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import HealFactory
from helpers import Clock, alert, drive, policy_text
from sqlalchemy import select, update

from heal.api.app import create_app
from heal.app import Heal
from heal.approvals.chat import answer_button
from heal.demo.itsm import FakeITSM
from heal.notify.cards import Verb
from heal.settings import hash_token
from heal.store import actions_repo, approvals_repo, incidents_repo, timeline_repo, users_repo
from heal.store.tables import actions, notifications

APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 1, expires_in: 600%s}
"""
TOKEN = "token-of-alice"


async def _heal(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock, require: str = ""
) -> Heal:
    heal: Heal = await make_heal(policy_text(itsm[1]) + APPROVAL % require, clock=clock)
    heal.approvals.clock = clock
    async with heal.db.write() as connection:
        user_id = await users_repo.add(connection, "alice", "admin", [], clock())
        await users_repo.add_token(connection, user_id, hash_token(TOKEN), "test", clock())
        await users_repo.link_chat(connection, user_id, "telegram", "111")
    return heal


def _client(heal: Heal) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False)),
        base_url="http://heal",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


async def _waiting(heal: Heal) -> tuple[int, int, int]:
    """(incident, action, approval) of a fresh alert's waiting action."""
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
        approval = await approvals_repo.for_action(connection, action["id"])
    assert action["status"] == "waiting"
    assert approval is not None
    return report.incident_ids[0], action["id"], approval["id"]


async def _state(heal: Heal, action_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    async with heal.db.read() as connection:
        action = await actions_repo.load(connection, action_id)
        approval = await approvals_repo.for_action(connection, action_id)
    assert action is not None
    assert approval is not None
    return action, approval


async def _messages(heal: Heal, action_id: int) -> list[str]:
    async with heal.db.read() as connection:
        return [e["message"] for e in await timeline_repo.for_action(connection, action_id)]


async def _updates(heal: Heal, approval_id: int) -> list[str]:
    async with heal.db.read() as connection:
        rows = await connection.execute(
            select(notifications.c.text)
            .where(notifications.c.approval_id == approval_id, notifications.c.kind == "update")
            .order_by(notifications.c.id)
        )
        return list(rows.scalars())


async def test_resolve_while_pending_makes_the_approval_obsolete_and_never_runs_the_action(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, _ = itsm
    heal = await _heal(make_heal, itsm, clock)
    incident_id, action_id, approval_id = await _waiting(heal)
    report = await heal.ingest.ingest([alert(status="resolved")])
    assert report.incidents_resolved == 1

    action, approval = await _state(heal, action_id)
    reason = "the incident resolved while it was pending"
    assert (approval["status"], approval["reason"]) == ("obsolete", reason)
    assert approval["archived_at"] == clock.now
    assert (action["status"], action["message"]) == ("skipped", f"approval obsolete: {reason}")
    assert action["next_wake_at"] is None
    notice = f"approval #{approval_id} obsolete: {reason}; action skipped"
    assert await _updates(heal, approval_id) == [notice]  # closes the card
    async with heal.db.read() as connection:
        timeline = [e["message"] for e in await timeline_repo.for_incident(connection, incident_id)]
    assert timeline[-2:] == ["incident resolved: all alerts resolved", notice]

    async with _client(heal) as client:
        answer = await client.post(f"/api/v1/approvals/{approval_id}/approve")
    assert answer.status_code == 409
    assert answer.json()["detail"] == (f"the approval is obsolete ({reason}), no longer pending")
    pressed = await answer_button(
        heal.db,
        heal.approvals,
        provider="telegram",
        external_user="111",
        approval_id=approval_id,
        verb=Verb.APPROVE,
    )
    assert pressed == f"Approval {approval_id}: {answer.json()['detail']}."
    await heal.engine.wake(action_id, 0)  # the expiry wake scheduled at creation is stale
    clock.advance(601)
    assert await heal.sweep_expired_approvals() == 0
    assert fake.requests == []
    action, approval = await _state(heal, action_id)
    assert (action["status"], approval["status"]) == ("skipped", "obsolete")


async def test_a_resolve_delivered_twice_ends_the_approval_once(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    _, action_id, approval_id = await _waiting(heal)
    await heal.ingest.ingest([alert(status="resolved")])
    clock.advance(5)
    await heal.ingest.ingest([alert(status="resolved")])
    assert len(await _updates(heal, approval_id)) == 1
    assert sum("obsolete" in m for m in await _messages(heal, action_id)) == 1


async def test_on_resolve_keep_leaves_the_approval_pending_and_approving_runs_it(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, require=", on_resolve: keep")
    _, action_id, approval_id = await _waiting(heal)
    await heal.ingest.ingest([alert(status="resolved")])
    action, approval = await _state(heal, action_id)
    assert (action["status"], approval["status"]) == ("waiting", "pending")
    async with _client(heal) as client:
        answer = await client.post(f"/api/v1/approvals/{approval_id}/approve")
    assert answer.json()["status"] == "approved"
    assert (await drive(heal, clock, action_id))["status"] == "success"


async def test_cancelling_a_waiting_action_makes_its_approval_obsolete(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    _, action_id, approval_id = await _waiting(heal)
    async with _client(heal) as client:
        cancelled = await client.post(
            f"/api/v1/actions/{action_id}/cancel", json={"reason": "fixed by hand"}
        )
        assert cancelled.status_code == 200, cancelled.text
        answer = await client.post(f"/api/v1/approvals/{approval_id}/approve")
    reason = "its action ended failure: cancelled by alice: fixed by hand"
    assert answer.status_code == 409
    assert answer.json()["detail"] == f"the approval is obsolete ({reason}), no longer pending"
    action, approval = await _state(heal, action_id)
    assert (action["status"], action["failure_type"]) == ("failure", "user_abort")
    assert (approval["status"], approval["reason"]) == ("obsolete", reason)
    assert await _updates(heal, approval_id) == [f"approval #{approval_id} obsolete: {reason}"]
    assert f"approval #{approval_id} obsolete: {reason}" in await _messages(heal, action_id)


async def test_expiry_skips_the_action_but_a_firing_alert_keeps_the_incident_open(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    incident_id, action_id, _ = await _waiting(heal)
    row = await drive(heal, clock, action_id)  # the only wake due is the expiry
    assert (row["status"], row["message"]) == ("skipped", "approval expired (disposition: timeout)")
    await heal.engine.wake(action_id, 0)  # a redelivered expiry wake does nothing
    action, approval = await _state(heal, action_id)
    assert (approval["status"], approval["reason"]) == ("expired", "timeout")
    assert action["version"] == 1
    messages = await _messages(heal, action_id)
    assert "approval expired unanswered: action skipped (disposition timeout)" in messages
    assert not any("reject" in m for m in messages)
    async with heal.db.read() as connection:
        incident = await incidents_repo.get(connection, incident_id)
    assert incident is not None
    assert (incident["status"], incident["resolution"]) == ("open", None)

    clock.advance(60)
    await heal.ingest.ingest([alert(status="resolved")])
    async with heal.db.read() as connection:
        incident = await incidents_repo.get(connection, incident_id)
    assert incident is not None
    assert (incident["status"], incident["resolution"]) == ("resolved", "resolved")
    _, approval = await _state(heal, action_id)
    assert approval["status"] == "expired"  # not made obsolete by the late resolve


async def test_the_sweeper_ends_approvals_left_pending_by_an_ended_action(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock)
    _, action_id, _ = await _waiting(heal)
    async with heal.db.write() as connection:  # as an older heal left a cancelled action
        await connection.execute(
            update(actions).where(actions.c.id == action_id).values(status="failure")
        )
    clock.advance(601)
    assert await heal.sweep_expired_approvals() == 0
    _, approval = await _state(heal, action_id)
    assert (approval["status"], approval["reason"]) == (
        "obsolete",
        "its action had already ended failure",
    )
