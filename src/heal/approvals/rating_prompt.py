"""Asking the incident's chat thread to rate its remediation, once, when it resolves.

Written into the outbox by the transaction that resolves the incident, so the question is
as durable as the resolution; the dispatcher posts it (buttons 1-5) under the incident's
card on every chat that has one. Asked at resolution, not at the verification's verdict:
that is when people are looking at the thread, the verdict may come ``quiet_for`` later
(or never, without ``verify:``), and a rating overrides the verdict's score anyway.

Only where there is something to rate and somewhere to ask: an action of the incident
ran (a notify step alone is no remediation), and the incident has a card in a chat. One
prompt per incident: its row's dedupe key holds across redeliveries and workers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.notify.cards import RATING_QUESTION, RatingPrompt
from heal.store import notifications_repo
from heal.store import verifications_repo as ratings_repo
from heal.store.tables import actions, chat_cards

KIND = "rating"


def dedupe_key(incident_id: int) -> str:
    return f"rating-prompt:{incident_id}"


async def ask_for_ratings(
    connection: AsyncConnection, incident_ids: list[int], now: datetime
) -> list[int]:
    """Queue the rating prompt of each resolved incident that qualifies; their ids."""
    if not incident_ids:
        return []
    threaded = set(
        (
            await connection.execute(
                select(chat_cards.c.incident_id)
                .where(chat_cards.c.incident_id.in_(incident_ids))
                .distinct()
            )
        ).scalars()
    )
    remediated = set(
        (
            await connection.execute(
                select(actions.c.incident_id)
                .where(
                    actions.c.incident_id.in_(threaded),
                    actions.c.started_at.is_not(None),
                    actions.c.plugin != "notify",
                )
                .distinct()
            )
        ).scalars()
    )
    asked = sorted(remediated)
    for incident_id in asked:
        await notifications_repo.enqueue(
            connection,
            incident_id=incident_id,
            kind=KIND,
            text=RATING_QUESTION,
            now=now,
            dedupe_key=dedupe_key(incident_id),
        )
    return asked


async def prompt_of(connection: AsyncConnection, incident: dict[str, Any]) -> RatingPrompt:
    """The prompt as it reads now: the question, and who rated what (oldest first)."""
    ratings = await ratings_repo.ratings_of(connection, incident["id"])
    return RatingPrompt(
        incident["id"],
        incident["title"],
        tuple((r["rated_by"], r["score"]) for r in reversed(ratings)),
    )
