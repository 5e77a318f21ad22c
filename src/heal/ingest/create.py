"""One new action outside a batch of alerts (a fallback, a decision's choice): built,
gated, stored, announced and scheduled in the caller's transaction, as ingest does for a
batch, so what started it and the action commit together."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.gate import Silence
from heal.domain.actions import ActionStatus, Signal
from heal.engine.create import inflight_key, new_action_row, snapshot_verify
from heal.engine.interfaces import WakeScheduler
from heal.ingest.service import gate, record_created
from heal.policy.models import ActionBase, Policy, Verify
from heal.store import actions_repo, silences_repo

Note = Callable[..., None]


@dataclass(frozen=True, slots=True)
class NewAction:
    """What to create. ``why``: how the timeline says it came about ("by rule 'r'", "as
    the fallback of 'a' (#3)"); ``context``: extra keys for the action's context (where
    it came from, e.g. ``fallback`` or ``decision``); ``noted``: extra data of the
    creation's timeline entry."""

    incident_id: int
    incident: Mapping[str, Any]
    alert_id: int | None
    alert: Mapping[str, Any]
    rule: str
    action_name: str
    config: ActionBase
    signal: Signal
    why: str
    verify: Verify | None = None
    params: Mapping[str, Any] | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    noted: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Created:
    """The new action (None: one was already in flight, ``in_flight`` says which) and its
    row as stored."""

    action_id: int | None
    row: dict[str, Any] = field(default_factory=dict)
    in_flight: int | None = None


async def create_action(
    connection: AsyncConnection,
    new: NewAction,
    *,
    policy: Policy,
    scheduler: WakeScheduler,
    note: Note,
    now: datetime,
) -> Created:
    """The action, unless the same (incident, rule, action) is in flight already; through
    the gate (silences, governors, approval); its timeline entries go to ``note``."""
    key = inflight_key(new.incident_id, new.rule, new.action_name)
    running = (await actions_repo.in_flight(connection, [key])).get(key)
    if running is not None:
        return Created(None, in_flight=running)
    row = new_action_row(
        incident_id=new.incident_id,
        alert_id=new.alert_id,
        rule=new.rule,
        action_name=new.action_name,
        config=new.config,
        signal=new.signal,
        alert=dict(new.alert),
        incident=dict(new.incident),
        settings=policy.settings,
        now=now,
        params=new.params,
        policy=policy,
    )
    row["context"].update(new.context)
    snapshot_verify(row, new.verify)
    if row["status"] == ActionStatus.RECEIVED.value:
        silences = [Silence.from_row(r) for r in await silences_repo.active(connection, now)]
        labels = dict(new.alert.get("labels") or {})
        await gate(
            connection, row, new.config, policy, new.rule, new.action_name, labels, silences, now
        )
    [action_id] = await actions_repo.insert_many(connection, [row])
    await record_created(
        connection, row, action_id, new.why, note, policy, scheduler, now, new.noted
    )
    return Created(action_id, row)
