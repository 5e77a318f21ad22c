"""The knowledge base: past remediations and runbook sections, by full-text search."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from heal.api.auth import Viewer
from heal.api.schemas import VALIDATION_ERRORS
from heal.app import Heal
from heal.decide.knowledge import KnowledgeBase

router = APIRouter(prefix="/api/v1", tags=["knowledge base"], responses=VALIDATION_ERRORS)


class KnowledgeHitView(BaseModel):
    kind: Literal["remediation", "runbook"]
    title: str
    ref: str
    """Where it comes from: "incident 12", "runbooks/disk.md#disk-full"."""
    score: float
    """Higher is better; comparable within one answer only."""
    text: str


@router.get("/kb/search")
async def search_knowledge(
    request: Request,
    _caller: Viewer,
    q: Annotated[str, Query(max_length=2000, description="free text; never query syntax")],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    kind: Literal["remediation", "runbook"] | None = None,
) -> list[KnowledgeHitView]:
    """Entries matching any word of ``q``, best first: the more of the words an entry
    has, the higher, words in its title most. Quotes, operators and punctuation are text."""
    heal: Heal = request.app.state.heal
    hits = await KnowledgeBase(heal.db).search(q, limit, kind=kind)
    return [
        KnowledgeHitView(
            kind="remediation" if hit.kind == "remediation" else "runbook",
            title=hit.title,
            ref=hit.ref,
            score=hit.score,
            text=hit.text,
        )
        for hit in hits
    ]
