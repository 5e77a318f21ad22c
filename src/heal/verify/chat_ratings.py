"""A rating button pressed in a chat: who pressed it, and the rating it records.

The same identity rules as approval buttons (the chat user must be linked to an enabled
heal user) and the same rule as the API (an operator or above rates); the rating goes
through ``ratings.rate``, so the timeline and the effectiveness score are the API's.
A press that repeats the person's current rating (a redelivery, a second tap) records
nothing and says so; a different score replaces theirs. The prompt never closes: a late
press still rates (the last rating wins), like ``heal incidents rate`` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals.rating_prompt import prompt_of
from heal.domain.access import Role
from heal.domain.redaction import Redactor
from heal.notify.cards import RatingPrompt
from heal.store import incidents_repo, users_repo
from heal.store import verifications_repo as repo
from heal.store.db import Database
from heal.verify.ratings import IncidentNotFound, rate


@dataclass(frozen=True, slots=True)
class RatingAnswer:
    text: str
    """What the person who pressed is told (only they see it)."""
    prompt: RatingPrompt | None = None
    """The prompt as it should read now, or None when the message need not change."""


async def answer_rating(
    database: Database,
    *,
    provider: str,
    external_user: str,
    incident_id: int,
    score: int,
    now: datetime,
    redact: Redactor,
) -> RatingAnswer:
    async with database.read() as connection:
        user = await users_repo.chat_owner(connection, provider, external_user)
        incident = await incidents_repo.get(connection, incident_id)
        earlier = (
            await _rating_by(connection, incident_id, user["name"])
            if user is not None and incident is not None
            else None
        )
    if user is None:
        return RatingAnswer(
            f"You are not linked to a heal user, so you cannot rate. An admin can link "
            f"you with: heal users link NAME --{provider} {external_user}"
        )
    if user["disabled"]:
        return RatingAnswer(f"Refused: heal user {user['name']} is disabled.")
    role = Role.parse(user["role"])
    if role < Role.OPERATOR:
        return RatingAnswer(
            f"Refused: heal user {user['name']} is {role.a_label}; rating a remediation "
            "takes an operator."
        )
    if incident is None:
        return RatingAnswer(f"Incident {incident_id} does not exist.")
    if earlier == score:
        return RatingAnswer(f"You rated incident #{incident_id} {score}/5 already.")
    try:
        await rate(database, incident_id, user["name"], score, "", now, redact)
    except IncidentNotFound:
        return RatingAnswer(f"Incident {incident_id} does not exist.")
    async with database.read() as connection:
        prompt = await prompt_of(connection, incident)
    said = f"from {earlier}/5 to {score}/5" if earlier is not None else f"{score}/5"
    return RatingAnswer(f"Thanks, {user['name']}: incident #{incident_id} rated {said}.", prompt)


async def _rating_by(connection: AsyncConnection, incident_id: int, name: str) -> int | None:
    for row in await repo.ratings_of(connection, incident_id):
        if row["rated_by"] == name:
            return int(row["score"])
    return None
