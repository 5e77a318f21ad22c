"""Approval through an ITSM fast-approval ticket, written in the node language."""

from __future__ import annotations

import pytest
from conftest import HealFactory
from helpers import Clock, alert, drive, policy_text

from heal.app import Heal
from heal.demo.itsm import FakeITSM
from heal.store import approvals_repo, incidents_repo, timeline_repo

TICKET = """
    approval_ticket:
      nodes:
        - function: ask_itsm
          name: Create approval ticket
          request: {url: "{{ settings.itsm_url }}/create_fast_approval_ticket/", method: POST}
          inputs:
            - key: fields
              format: jinja2
              value:
                - {key: title, value: "Run {{ action.name }} for {{ incident.title }}?"}
                - {key: APPROVER, value: "alice,bob"}
          outputs: [{key: approval_sn, value: response.data.sn}]
          next_function: wait_itsm
        - function: wait_itsm
          name: Wait for the approval ticket
          request: {url: "{{ settings.itsm_url }}/ticket_approve_result/", method: GET}
          inputs: [{key: sn, value: pre_node_outputs.approval_sn}]
          outputs:
            - {key: approval_status, value: response.data.current_status}
            - {key: approved, value: response.data.approve_result}
            - {key: approver, value: response.data.updated_by}
          finished_rule: {key: approval_status, method: in, value: [FINISHED, TERMINATED, REVOKED]}
          success_rule: {key: approved, method: equal, value: true}
          need_schedule: true
          schedule_timedelta: 60
      on_expire:
        function: revoke_itsm
        name: Revoke the approval ticket
        request: {url: "{{ settings.itsm_url }}/operate_ticket/", method: POST}
        inputs:
          - {key: sn, value: approval_sn}
          - {key: action_type, value: WITHDRAW, format: raw}
"""
APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 1, expires_in: 600}
"""


async def _heal(make_heal: HealFactory, url: str, clock: Clock) -> Heal:
    text = policy_text(url).replace("    type: http\n", "    type: http\n" + TICKET, 1)
    heal: Heal = await make_heal(text + APPROVAL, clock=clock)
    heal.approvals.clock = clock
    return heal


@pytest.mark.parametrize(
    ("approve", "status", "tickets"), [(True, "success", 2), (False, "skipped", 1)]
)
async def test_the_itsm_ticket_decides(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    approve: bool,
    status: str,
    tickets: int,
) -> None:
    fake, url = itsm
    fake.approve = approve
    heal = await _heal(make_heal, url, clock)
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
    assert (action["status"], action["current_node"]) == ("waiting", "ask_itsm")
    row = await drive(heal, clock, action["id"])

    approval_ticket = next(t for t in fake.tickets.values() if t.kind == "approval")
    assert approval_ticket.title == "Run open-ticket for CheckoutDown (service=checkout)?"
    assert approval_ticket.approvers == ["alice", "bob"]
    polls = fake.requests_to("/ticket_approve_result/")
    assert len(polls) == fake.finish_after_polls
    assert row["status"] == status
    assert fake.tickets_created == tickets  # the remediation ticket only when approved
    async with heal.db.read() as connection:
        approval = await approvals_repo.for_action(connection, action["id"])
        assert approval is not None
        signatures = await approvals_repo.signatures(connection, approval["id"])
    assert approval["status"] == ("approved" if approve else "rejected")
    assert [s["channel"] for s in signatures] == ["itsm"]
    assert signatures[0]["signer"].startswith("itsm:")


async def test_an_expired_approval_revokes_its_ticket(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    fake, url = itsm
    fake.finish_after_polls = 10**6  # nobody ever answers the ticket
    heal = await _heal(make_heal, url, clock)
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
    row = await drive(heal, clock, action["id"])

    assert (row["status"], row["message"]) == ("skipped", "approval expired (disposition: timeout)")
    (ticket,) = fake.tickets.values()
    assert ticket.current_status == "REVOKED"
    assert len(fake.requests_to("/ticket_approve_result/")) == 10  # every 60 s for 600 s
    async with heal.db.read() as connection:
        events = [e["message"] for e in await timeline_repo.for_action(connection, row["id"])]
    assert "Revoke the approval ticket finished" in events


async def test_approving_over_the_api_while_the_ticket_is_open_runs_the_action(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    from heal.domain.approvals import Role, Signer

    fake, url = itsm
    fake.finish_after_polls = 10**6
    heal = await _heal(make_heal, url, clock)
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
        approval = await approvals_repo.for_action(connection, action["id"])
    assert approval is not None
    await heal.engine.wake(action["id"], 0)  # the approval ticket is created
    await heal.approvals.sign(
        approval["id"], Signer("carol", Role.APPROVER, frozenset()), approve=True
    )
    polls_before = len(fake.requests_to("/ticket_approve_result/"))
    fake.finish_after_polls = 2
    row = await drive(heal, clock, action["id"])
    assert row["status"] == "success"
    assert any(t.kind == "ticket" for t in fake.tickets.values())
    # Straight to the remediation: the approval ticket is not polled any more.
    assert len(fake.requests_to("/ticket_approve_result/")) == polls_before
