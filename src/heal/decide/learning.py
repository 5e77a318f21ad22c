"""Learning from what fixed things: a durable sweep hands each incident whose remediation's
effectiveness became known (or changed: a later rating overrides) to a list of learners.

The sweep keeps one ``learned`` row per incident: the effectiveness it learned and the
newest rating, verdict or resolution it had seen. An incident is due again only when one of
those is newer, so a restart, a second worker or a second sweep never counts it twice; a
learner that counted it before gets ``previous_effectiveness`` and adjusts instead.

The playbook learner (``learn_playbook``): effectiveness >= 4 makes a draft playbook of the
incident's signature and its remediating action (5: approved at once, as people rated or
heal verified it a full fix), or adds a verified success to the playbook it matches
(signature, action and params); a lower effectiveness counts as a run without success of a
matching playbook. A rejected proposal (``record_rejection``) counts as a failed run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.playbooks import (
    PlaybookStatus,
    annotation_text,
    params_key,
    signature_of,
)
from heal.domain.verification import Outcome
from heal.observability.logging import get_logger
from heal.store import incidents_repo, verifications_repo
from heal.store import playbooks_repo as repo
from heal.store.db import Database
from heal.store.tables import incidents, learned, ratings, verifications
from heal.verify import ratings as remediation_summary

SWEEP_BATCH = 100
EFFECTIVE = 4
AUTO_APPROVE = 5

log = get_logger("heal.decide.learning")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LearnedRemediation:
    """An incident whose remediation's effectiveness is known, as learners see it."""

    incident: Mapping[str, Any]
    action_id: int
    action_name: str
    params: Mapping[str, Any]
    action_status: str
    outcome: str | None
    effectiveness: int
    """1-5 (``heal.verify.ratings.remediation``)."""
    previous_effectiveness: int | None
    """What an earlier sweep learned of this incident; None the first time."""
    resolve_seconds: float | None
    """From the incident's opening to its resolution; None while open."""
    labels: Mapping[str, str]
    """The first alert's labels."""
    annotations: Mapping[str, str]
    """The first alert's annotations."""
    now: datetime

    @property
    def effective(self) -> bool:
        return self.effectiveness >= EFFECTIVE

    @property
    def first_time(self) -> bool:
        return self.previous_effectiveness is None


@dataclass(frozen=True, slots=True)
class Due:
    """An incident the sweep looks at: ``remedy`` for the learners (None when the
    effectiveness is unknown or unchanged, or no action ran), what the marker keeps."""

    remedy: LearnedRemediation | None
    effectiveness: int | None
    seen_at: datetime
    marker: dict[str, Any] | None


Learner = Callable[[AsyncConnection, LearnedRemediation], Awaitable[None]]


class LearningSweep:
    """The sweep (``runtime.add_sweep(sweep.sweep)``); ``learners`` run in order, in the
    incident's write transaction (one failing rolls the incident back, to be tried again)."""

    def __init__(
        self,
        database: Database,
        learners: Sequence[Learner] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.learners: list[Learner] = list(learners if learners is not None else [learn_playbook])
        self.clock = clock

    async def sweep(self, batch: int = SWEEP_BATCH) -> int:
        """Learn from every due incident; how many were handed to the learners."""
        handed = 0
        after_id = 0
        while True:
            async with self.db.read() as connection:
                ids = await due_incidents(connection, after_id, batch)
            for incident_id in ids:
                try:
                    if await self.learn(incident_id):
                        handed += 1
                except Exception:
                    log.exception("learning failed", incident_id=incident_id)
            if len(ids) < batch:
                return handed
            after_id = ids[-1]

    async def learn(self, incident_id: int) -> bool:
        """Learn from one incident if it is due; True when the learners ran."""
        async with self.db.write() as connection:
            now = self.clock()
            found = await remediation_of(connection, incident_id, now)
            if found is None:
                return False
            marker = found.marker
            claimed = await repo.claim_learned(
                connection,
                {
                    "incident_id": incident_id,
                    "effectiveness": found.effectiveness,
                    "seen_at": found.seen_at,
                    "learned_at": now,
                    "playbook_id": marker["playbook_id"] if marker else None,
                    "playbook_success": bool(marker["playbook_success"]) if marker else False,
                },
            )
            if not claimed or found.remedy is None:
                return False
            for learner in self.learners:
                await learner(connection, found.remedy)
            return True


async def due_incidents(connection: AsyncConnection, after_id: int, limit: int) -> list[int]:
    """Incidents rated, judged or resolved since the sweep last looked at them."""
    rated = (
        select(ratings.c.incident_id.label("incident_id"))
        .select_from(ratings.outerjoin(learned, learned.c.incident_id == ratings.c.incident_id))
        .where(learned.c.incident_id.is_(None) | (ratings.c.at > learned.c.seen_at))
    )
    judged = (
        select(verifications.c.incident_id.label("incident_id"))
        .select_from(
            verifications.outerjoin(learned, learned.c.incident_id == verifications.c.incident_id)
        )
        .where(
            verifications.c.outcome != Outcome.PENDING.value,
            learned.c.incident_id.is_(None) | (verifications.c.outcome_at > learned.c.seen_at),
        )
    )
    resolved = (
        select(incidents.c.id.label("incident_id"))
        .select_from(incidents.join(learned, learned.c.incident_id == incidents.c.id))
        .where(incidents.c.resolved_at > learned.c.seen_at)
    )
    due = union(rated, judged, resolved).subquery()
    result = await connection.execute(
        select(due.c.incident_id)
        .where(due.c.incident_id > after_id)
        .order_by(due.c.incident_id)
        .limit(limit)
    )
    return [int(row.incident_id) for row in result]


async def remediation_of(
    connection: AsyncConnection, incident_id: int, now: datetime
) -> Due | None:
    """What there is to learn of the incident now; None when nothing changed since the
    sweep last looked."""
    incident = await incidents_repo.get(connection, incident_id)
    if incident is None:
        return None
    watches = await verifications_repo.for_incident(connection, incident_id)
    rated = await verifications_repo.ratings_of(connection, incident_id)
    facts = [
        *(r["at"] for r in rated),
        *(w["outcome_at"] for w in watches if w["outcome_at"] is not None),
        *([incident["resolved_at"]] if incident["resolved_at"] is not None else []),
    ]
    if not facts:
        return None
    seen_at = max(facts)
    marker = await repo.learned_of(connection, incident_id)
    if marker is not None and marker["seen_at"] >= seen_at:
        return None  # another sweep got here first
    summary = await remediation_summary.remediation(connection, incident)
    effectiveness = summary["effectiveness"]
    previous = marker["effectiveness"] if marker else None
    action = await _remediating_action(connection, incident_id, watches)
    if effectiveness is None or action is None or effectiveness == previous:
        return Due(None, effectiveness, seen_at, marker)
    alerts = await verifications_repo.incident_alerts(connection, incident_id)
    first = alerts[0] if alerts else {"labels": {}, "annotations": {}}
    resolved_at = incident["resolved_at"]
    return Due(
        LearnedRemediation(
            incident=incident,
            action_id=int(action["id"]),
            action_name=str(action["action_name"]),
            params=dict((action["context"] or {}).get("params") or {}),
            action_status=str(action["status"]),
            outcome=summary["outcome"],
            effectiveness=int(effectiveness),
            previous_effectiveness=previous,
            resolve_seconds=(
                (resolved_at - incident["opened_at"]).total_seconds() if resolved_at else None
            ),
            labels=dict(first["labels"] or {}),
            annotations=dict(first["annotations"] or {}),
            now=now,
        ),
        int(effectiveness),
        seen_at,
        marker,
    )


async def _remediating_action(
    connection: AsyncConnection, incident_id: int, watches: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The action the effectiveness is about: the latest verified one, else the latest that
    succeeded, else the latest."""
    taken = await incidents_repo.actions_of(connection, incident_id)
    if not taken:
        return None
    by_id = {row["id"]: row for row in taken}
    if watches and watches[-1]["action_id"] in by_id:
        return by_id[watches[-1]["action_id"]]
    succeeded = [row for row in taken if row["status"] == "success"]
    return (succeeded or taken)[-1]


async def learn_playbook(connection: AsyncConnection, remedy: LearnedRemediation) -> None:
    """The playbook learner (see the module's docstring)."""
    incident_id = int(remedy.incident["id"])
    marker = await repo.learned_of(connection, incident_id)
    counted = marker["playbook_id"] if marker else None
    if counted is not None and await repo.get(connection, counted) is not None:
        await _recount(connection, remedy, counted, bool(marker and marker["playbook_success"]))
        return
    signature = signature_of(remedy.labels, remedy.incident.get("severity"))
    key = params_key(remedy.params)
    used_at = remedy.incident.get("resolved_at") or remedy.now
    existing = await repo.find_merge(connection, signature.key, remedy.action_name, key)
    if existing is not None:
        await repo.adjust(
            connection,
            existing["id"],
            remedy.now,
            runs=1,
            successes=int(remedy.effective),
            resolve_seconds=remedy.resolve_seconds,
            used_at=used_at,
        )
        await _maybe_approve(connection, existing["id"], remedy)
        await repo.set_learned_playbook(connection, incident_id, existing["id"], remedy.effective)
        return
    if not remedy.effective:
        return  # nothing worked: there is no playbook to make of it
    status = (
        PlaybookStatus.APPROVED if remedy.effectiveness >= AUTO_APPROVE else PlaybookStatus.DRAFT
    )
    playbook_id = await repo.insert_playbook(
        connection,
        {
            "name": f"{signature.alertname or 'alert'}: {remedy.action_name}"[:200],
            "signature_key": signature.key,
            "signature": signature.as_record(),
            "alertname": signature.alertname,
            "annotation_text": annotation_text(remedy.annotations),
            "action_name": remedy.action_name,
            "params": dict(remedy.params),
            "params_key": key,
            "status": status.value,
            "runs": 1,
            "verified_successes": 1,
            "mttr_seconds": remedy.resolve_seconds,
            "mttr_samples": 1 if remedy.resolve_seconds is not None else 0,
            "learned_from": incident_id,
            "last_used_at": used_at,
            "created_at": remedy.now,
            "updated_at": remedy.now,
        },
    )
    await repo.set_learned_playbook(connection, incident_id, playbook_id, True)
    log.info("playbook learned", playbook_id=playbook_id, incident_id=incident_id, status=status)


async def _recount(
    connection: AsyncConnection, remedy: LearnedRemediation, playbook_id: int, was_success: bool
) -> None:
    """The incident counted for this playbook before: only its success may change."""
    delta = int(remedy.effective) - int(was_success)
    if delta:
        await repo.adjust(connection, playbook_id, remedy.now, successes=delta)
    await _maybe_approve(connection, playbook_id, remedy)
    await repo.set_learned_playbook(
        connection, int(remedy.incident["id"]), playbook_id, remedy.effective
    )


async def _maybe_approve(
    connection: AsyncConnection, playbook_id: int, remedy: LearnedRemediation
) -> None:
    """A full fix approves a draft; a deprecated playbook stays deprecated."""
    if remedy.effectiveness < AUTO_APPROVE:
        return
    row = await repo.get(connection, playbook_id)
    if row is not None and row["status"] == PlaybookStatus.DRAFT.value:
        await repo.set_values(
            connection,
            playbook_id,
            {"status": PlaybookStatus.APPROVED.value, "updated_at": remedy.now},
        )


async def record_rejection(
    connection: AsyncConnection, playbook_id: int, now: datetime | None = None
) -> dict[str, Any] | None:
    """People rejected a proposal of this playbook: negative evidence, counted as a failed
    run in its lower bound. The playbook after it, None if it is gone."""
    return await repo.adjust(connection, playbook_id, now or utcnow(), rejections=1)
