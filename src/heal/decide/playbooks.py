"""Tier 1: the approved playbook that verifiably fixed the same symptoms before.

The first alert's signature is looked up exactly (an index on status and key); failing
that, the approved playbooks of the same alert name (the only ones that can reach a sane
threshold) are read best lower bound first, in chunks, and compared; reading stops as soon
as no further row can outrank the best match found (rows come by lower bound, and the
lower bound ranks first). Nothing is cached: the rows are the truth, and the indexes keep
a match within milliseconds over tens of thousands of playbooks (``python -m bench --only
playbooks``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.decide.tiers import DecisionInput, TierAnswer
from heal.domain.decisions import Proposal, TierName
from heal.domain.playbooks import (
    Candidate,
    PlaybookStatus,
    Signature,
    annotation_text,
    likeness,
    rank,
    signature_of,
)
from heal.store import playbooks_repo as repo
from heal.store.db import Database

CHUNK = 200
Row = dict[str, Any]


class PlaybookTier:
    name = TierName.PLAYBOOK

    def __init__(self, database: Database) -> None:
        self.db = database

    async def propose(self, request: DecisionInput, deadline: float) -> TierAnswer:
        settings = request.policy.decide.playbooks
        if not settings.enabled:
            return TierAnswer.none("playbooks are disabled (decide.playbooks.enabled)")
        if not request.catalogue:
            return TierAnswer.none("the rule's catalogue is empty")
        alert = request.first_alert
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        name = str(alert.get("name") or labels.get("alertname") or "")
        signature = signature_of(labels, request.severity, name)
        text = annotation_text(alert.get("annotations") or {})
        async with self.db.read() as connection:
            found = await match(
                connection,
                signature,
                text,
                list(request.catalogue),
                settings.min_similarity,
                deadline,
            )
        if found is None:
            return TierAnswer.none(
                f"no approved playbook of {name or 'the alert'} for the catalogue's actions "
                f"at least {settings.min_similarity:.0%} alike"
            )
        row, similarity = found
        return TierAnswer(proposal(row, similarity))


async def match(
    connection: AsyncConnection,
    signature: Signature,
    text: str,
    actions: Sequence[str],
    min_similarity: float,
    deadline: float | None = None,
) -> tuple[Row, float] | None:
    """The best approved playbook for these symptoms and actions, and its similarity."""
    approved = PlaybookStatus.APPROVED.value
    exact = await repo.exact(connection, approved, signature.key, actions)
    if exact:
        return _best(exact, {row["id"]: 1.0 for row in exact}, min_similarity)
    rows: list[Row] = []
    scores: dict[int, float] = {}
    best_bound: float | None = None
    cursor: tuple[float, int] | None = None
    while deadline is None or time.monotonic() < deadline:
        chunk = await repo.candidates(
            connection, approved, signature.alertname, actions, below=cursor, limit=CHUNK
        )
        for row in chunk:
            if best_bound is not None and row["lower_bound"] < best_bound:
                return _best(rows, scores, min_similarity)
            score = likeness(
                signature, text, Signature.from_record(row["signature"]), row["annotation_text"]
            )
            if score >= min_similarity:
                rows.append(row)
                scores[row["id"]] = score
                if best_bound is None:
                    best_bound = row["lower_bound"]
        if len(chunk) < CHUNK:
            break
        cursor = (chunk[-1]["lower_bound"], chunk[-1]["id"])
    return _best(rows, scores, min_similarity) if rows else None


def _best(rows: list[Row], scores: Mapping[int, float], min_similarity: float) -> tuple[Row, float]:
    by_id = {row["id"]: row for row in rows}
    ranked = rank(
        (
            Candidate(row["id"], scores[row["id"]], row["lower_bound"], row["last_used_at"])
            for row in rows
        ),
        min_similarity,
    )
    return by_id[ranked[0].playbook_id], ranked[0].similarity


def proposal(row: Row, similarity: float) -> Proposal:
    how = "the same symptoms" if similarity >= 1.0 else f"{similarity:.0%} alike symptoms"
    return Proposal(
        tier=TierName.PLAYBOOK,
        action=row["action_name"],
        params=dict(row["params"] or {}),
        confidence=0.0,
        rationale=(
            f"playbook {row['id']} ({row['name']}) for {how}: "
            f"{row['verified_successes']} verified fixes in {row['runs']} runs, "
            f"{row['rejections']} rejections (lower bound {row['lower_bound']:.2f})"
        ),
        evidence={
            "playbook_id": row["id"],
            "similarity": round(similarity, 4),
            "lower_bound": row["lower_bound"],
            "runs": row["runs"],
            "verified_successes": row["verified_successes"],
        },
    )
