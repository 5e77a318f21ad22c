"""People's ratings of an incident's remediation, and what heal reports of its outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.incidents import IncidentStatus
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.domain.verification import Outcome, effectiveness_score, valid_score
from heal.store import incidents_repo, timeline_repo
from heal.store import verifications_repo as repo
from heal.store.db import Database


class IncidentNotFound(Exception):
    pass


async def rate(
    database: Database,
    incident_id: int,
    rated_by: str,
    score: int,
    comment: str,
    now: datetime,
    redact: Redactor,
) -> dict[str, Any]:
    """Record ``rated_by``'s rating (their earlier one is replaced); the incident's
    remediation summary after it."""
    if not valid_score(score):
        raise ValueError(f"a rating is 1 to 5, not {score}")
    async with database.write() as connection:
        incident = await incidents_repo.get(connection, incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        await repo.rate(connection, incident_id, rated_by, score, comment or None, now)
        say = f": {comment}" if comment else ""
        entry = TimelineEntry(
            EventKind.INCIDENT_RATED,
            f"remediation rated {score}/5 by {rated_by}{say}",
            {"score": score, "rated_by": rated_by},
        )
        await timeline_repo.append(connection, incident_id, [entry], now, redact)
        return await remediation(connection, incident)


def outcome_fields(watch: dict[str, Any] | None) -> dict[str, Any]:
    """What an action's view says of its verification."""
    if watch is None:
        return {"outcome": None, "verification": None}
    return {
        "outcome": watch["outcome"],
        "verification": {
            "within_at": _iso(watch["within_at"]),
            "quiet_for": watch["quiet_for"],
            "resolved_at": _iso(watch["resolved_at"]),
            "quiet_until": _iso(watch["quiet_until"]),
            "outcome_at": _iso(watch["outcome_at"]),
            "on_ineffective": watch["on_ineffective"],
            "evidence": watch["evidence"],
        },
    }


async def remediation(connection: AsyncConnection, incident: dict[str, Any]) -> dict[str, Any]:
    """The incident's remediation: the outcome of its latest verified action, the latest
    rating, and the effectiveness score (1-5, None while unknown)."""
    watches = await repo.for_incident(connection, incident["id"])
    ratings = await repo.ratings_of(connection, incident["id"])
    outcome = Outcome(watches[-1]["outcome"]) if watches else None
    latest = ratings[0] if ratings else None
    score = effectiveness_score(
        latest["score"] if latest else None,
        outcome,
        incident_resolved=incident["status"] == IncidentStatus.RESOLVED.value,
    )
    return {
        "outcome": outcome.value if outcome else None,
        "effectiveness": score,
        "rating": _rating(latest) if latest else None,
        "ratings": [_rating(r) for r in ratings],
    }


async def outcomes_by_action(
    connection: AsyncConnection, incident_id: int
) -> dict[int, dict[str, Any]]:
    return {w["action_id"]: w for w in await repo.for_incident(connection, incident_id)}


def _rating(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "score": row["score"],
        "rated_by": row["rated_by"],
        "comment": row["comment"],
        "at": _iso(row["at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
