"""What the verification tests share: a policy with verify:, and the steps of a story."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from helpers import Clock, alert, drive, policy_text

from heal.app import Heal
from heal.domain.alerts import Alert, AlertStatus
from heal.store import actions_repo, timeline_repo
from heal.store import verifications_repo as repo
from heal.store.tables import notifications
from heal.verify.ratings import remediation

WITHIN = 300
QUIET = 600

# Two more http actions against the fake ITSM: each opens a ticket and succeeds.
EXTRA_ACTIONS = """\
  second-ticket:
    type: http
    nodes:
      - function: create_task
        name: Create ticket
        request: {url: "{{ settings.itsm_url }}/create_ticket/", method: POST}
        inputs: [{key: fields, value: "`[]`", format: jmespath}]
  undo-ticket:
    type: http
    needs_approval: false
    nodes:
      - function: create_task
        name: Close ticket
        request: {url: "{{ settings.itsm_url }}/create_ticket/", method: POST}
        inputs: [{key: fields, value: "`[]`", format: jmespath}]
rules:
"""
RULE_ACTIONS = "    actions: [{action: open-ticket, signal: [firing]}]"


def verify_policy(
    itsm_url: str,
    on_ineffective: str = "none",
    *,
    rollback: str | None = None,
    action_verify: str | None = None,
) -> str:
    """The ITSM policy with ``verify:`` on its rule; the rule's next action starts only on
    resolve, so an escalation is what starts it early."""
    rule = (
        f"    verify: {{within: {WITHIN}, quiet_for: {QUIET}, on_ineffective: {on_ineffective}}}\n"
        "    actions: [{action: open-ticket, signal: [firing]}, "
        "{action: second-ticket, signal: [resolved]}]"
    )
    own = ""
    if rollback:
        own += f"    rollback: {rollback}\n"
    if action_verify:
        own += f"    verify: {action_verify}\n"
    return policy_text(
        itsm_url,
        **{
            "rules:\n": EXTRA_ACTIONS,
            RULE_ACTIONS: rule,
            "    timeout: 600\n": "    timeout: 600\n" + own,
        },
    )


async def fire_and_succeed(heal: Heal, clock: Clock, **labels: str) -> dict[str, Any]:
    """An alert fires, its ticket action runs to success: the watch begins."""
    report = await heal.ingest.ingest([alert(**labels)])
    assert report.actions_created == 1
    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    return row


async def resolve(heal: Heal, **labels: str) -> None:
    await heal.ingest.ingest([alert(status="resolved", **labels)])


def fired_again(clock: Clock, **labels: str) -> Alert:
    """A new occurrence of the same alert (same fingerprint, a later start)."""
    return alert(starts_at=clock.now - timedelta(seconds=1), **labels)


async def watch_of(heal: Heal, action_id: int = 1) -> dict[str, Any]:
    async with heal.db.read() as connection:
        found = await repo.for_action(connection, action_id)
    assert found is not None
    return found


async def summary(heal: Heal, incident_id: int = 1) -> dict[str, Any]:
    from heal.store import incidents_repo

    async with heal.db.read() as connection:
        incident = await incidents_repo.get(connection, incident_id)
        assert incident is not None
        return await remediation(connection, incident)


async def outcome_entries(heal: Heal, incident_id: int = 1) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        entries = await timeline_repo.for_incident(connection, incident_id)
    return [e for e in entries if e["kind"] == "action.outcome"]


async def chat_updates(heal: Heal) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        rows = await connection.execute(notifications.select().order_by(notifications.c.id))
    return [dict(r._mapping) for r in rows]


async def action(heal: Heal, action_id: int) -> dict[str, Any] | None:
    async with heal.db.read() as connection:
        return await actions_repo.load(connection, action_id)


def resolved(occurrence: Alert, clock: Clock) -> Alert:
    """The resolve notification of that occurrence."""
    return replace(occurrence, status=AlertStatus.RESOLVED, ends_at=clock.now)
