"""Tier 1: the approved playbook that verifiably fixed the same symptoms before.

Only playbooks of the first alert's name can reach a sane threshold, so the tier looks at
those: an exact signature wins, else the most alike at or above ``min_similarity``, ranked
by lower bound (``heal.domain.playbooks.rank``). What it compares of them (signature items,
text, lower bound) is kept in-process per alert name, derived from the rows and dropped
when the name's stamp (count, newest id, sum of versions, newest update, one indexed
aggregate) differs: the rows stay the truth, and a match takes milliseconds over tens of
thousands of playbooks (``python -m bench --only playbooks``). The winner's row is read
afresh.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.decide.tiers import DecisionInput, TierAnswer
from heal.domain.decisions import Proposal, TierName
from heal.domain.playbooks import (
    Candidate,
    PlaybookStatus,
    Signature,
    Symptoms,
    annotation_text,
    rank,
    signature_of,
    symptoms_similarity,
)
from heal.store import playbooks_repo as repo
from heal.store.db import Database

CACHED_NAMES = 2048
Row = dict[str, Any]
Stamp = tuple[int, int, int, datetime | None]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One approved playbook as the tier compares it."""

    playbook_id: int
    lower_bound: float
    last_used_at: datetime | None
    action_name: str
    symptoms: Symptoms


@dataclass(frozen=True, slots=True)
class _Named:
    stamp: Stamp
    entries: list[_Entry]  # best lower bound first, then id


class PlaybookTier:
    name = TierName.PLAYBOOK

    def __init__(self, database: Database) -> None:
        self.db = database
        self._names: OrderedDict[str, _Named] = OrderedDict()

    async def propose(self, request: DecisionInput, deadline: float) -> TierAnswer:
        settings = request.policy.decide.playbooks
        if not settings.enabled:
            return TierAnswer.none("playbooks are disabled (decide.playbooks.enabled)")
        alert = request.first_alert
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        name = str(alert.get("name") or labels.get("alertname") or "")
        signature = signature_of(labels, request.severity, name)
        text = annotation_text(alert.get("annotations") or {})
        async with self.db.read() as connection:
            entries = await self._entries(connection, signature.alertname)
            found = best_entry(
                entries,
                Symptoms.of(signature, text),
                set(request.catalogue),
                settings.min_similarity,
                deadline,
            )
            row = await repo.get(connection, found[0].playbook_id) if found else None
        if found is None or row is None or row["status"] != PlaybookStatus.APPROVED.value:
            return TierAnswer.none(
                f"no approved playbook of {name or 'the alert'} for the catalogue's actions "
                f"at least {settings.min_similarity:.0%} alike"
            )
        return TierAnswer(proposal(row, found[1]))

    async def _entries(self, connection: AsyncConnection, alertname: str) -> list[_Entry]:
        approved = PlaybookStatus.APPROVED.value
        stamp = await repo.name_stamp(connection, approved, alertname)
        cached = self._names.get(alertname)
        if cached is not None and cached.stamp == stamp:
            self._names.move_to_end(alertname)
            return cached.entries
        entries = [_entry(row) for row in await repo.of_name(connection, approved, alertname)]
        self._names[alertname] = _Named(stamp, entries)
        self._names.move_to_end(alertname)
        while len(self._names) > CACHED_NAMES:
            self._names.popitem(last=False)
        return entries


def _entry(row: Row) -> _Entry:
    signature = Signature.from_record(row["signature"])
    symptoms = Symptoms.of(signature, row["annotation_text"])
    return _Entry(row["id"], row["lower_bound"], row["last_used_at"], row["action_name"], symptoms)


def best_entry(
    entries: Sequence[_Entry],
    wanted: Symptoms,
    actions: set[str],
    min_similarity: float,
    deadline: float | None = None,
) -> tuple[Candidate, float] | None:
    """The best playbook for these symptoms among ``entries`` (best lower bound first):
    past the first match, only rows of its lower bound can still outrank it."""
    found: list[Candidate] = []
    exact = [e for e in entries if e.symptoms.key == wanted.key and e.action_name in actions]
    if exact:
        found = [Candidate(e.playbook_id, 1.0, e.lower_bound, e.last_used_at) for e in exact]
    else:
        for number, entry in enumerate(entries):
            if found and entry.lower_bound < found[0].lower_bound:
                break
            if number % 256 == 255 and deadline is not None and time.monotonic() > deadline:
                break
            if entry.action_name not in actions:
                continue
            score = symptoms_similarity(wanted, entry.symptoms)
            if score >= min_similarity:
                found.append(
                    Candidate(entry.playbook_id, score, entry.lower_bound, entry.last_used_at)
                )
    ranked = rank(found, min_similarity)
    return (ranked[0], ranked[0].similarity) if ranked else None


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
