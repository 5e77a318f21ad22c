"""Approvals over REST: list, read, approve, reject. Silences: add, list, expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, field_validator

from heal.api import views
from heal.api.auth import Caller, Operator, Viewer
from heal.api.schemas import VALIDATION_ERRORS, CursorQuery, IdPath, Page, StoredText
from heal.app import Heal
from heal.approvals.service import ApprovalClosed, ApprovalNotFound
from heal.domain.approvals import ApprovalStatus, Signer, SignRefused
from heal.domain.matchers import LabelMatcher
from heal.engine.engine import utcnow
from heal.store import approvals_repo, silences_repo

router = APIRouter(prefix="/api/v1", tags=["approvals"], responses=VALIDATION_ERRORS)


def _heal(request: Request) -> Heal:
    heal: Heal = request.app.state.heal
    return heal


class Decision(BaseModel):
    comment: StoredText = Field(default="", max_length=2000)


@router.get("/approvals")
async def list_approvals(
    request: Request,
    _caller: Viewer,
    status_: Annotated[ApprovalStatus | None, Query(alias="status")] = None,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page:
    async with _heal(request).db.read() as connection:
        rows = await approvals_repo.page(
            connection, status_.value if status_ else None, limit, cursor
        )
    return Page(
        items=[views.plain(r) for r in rows],
        next_cursor=rows[-1]["id"] if len(rows) == limit else None,
    )


@router.get("/approvals/{approval_id}", responses={404: {"description": "no such approval"}})
async def get_approval(request: Request, approval_id: IdPath, _caller: Viewer) -> dict[str, Any]:
    async with _heal(request).db.read() as connection:
        row = await approvals_repo.get(connection, approval_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"approval {approval_id} not found")
        signatures = await approvals_repo.signatures(connection, approval_id)
    return {**views.plain(row), "signatures": [views.plain(s) for s in signatures]}


_DECIDE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "the caller may not sign this approval (a service token, role, "
        "scope, group, requester, already signed)"
    },
    404: {"description": "no such approval"},
    409: {"description": "the approval is no longer pending"},
}


async def _decide(
    request: Request, approval_id: IdPath, caller: Signer, approve: bool, comment: str
) -> dict[str, Any]:
    try:
        result = await _heal(request).approvals.sign(
            approval_id, caller, approve=approve, comment=comment, channel="api"
        )
    except ApprovalNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"approval {approval_id} not found"
        ) from None
    except ApprovalClosed as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except SignRefused as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, exc.reason) from None
    return {
        "id": approval_id,
        "status": result.approval_status.value,
        "action_status": result.action_status.value,
        "signatures": result.signatures,
        "required_signatures": result.required,
    }


@router.post("/approvals/{approval_id}/approve", responses=_DECIDE_RESPONSES)
async def approve(
    request: Request, approval_id: IdPath, caller: Caller, body: Decision | None = None
) -> dict[str, Any]:
    """Sign in favour; the action runs when the quorum is reached."""
    return await _decide(request, approval_id, caller, True, body.comment if body else "")


@router.post("/approvals/{approval_id}/reject", responses=_DECIDE_RESPONSES)
async def reject(
    request: Request, approval_id: IdPath, caller: Caller, body: Decision | None = None
) -> dict[str, Any]:
    """Reject: the action is skipped with the comment as its reason."""
    return await _decide(request, approval_id, caller, False, body.comment if body else "")


class NewSilence(BaseModel):
    matchers: dict[StoredText, StoredText] = Field(
        min_length=1, description="label matchers, Prometheus style: value, =v, !=v, =~re, !~re"
    )
    duration: int = Field(gt=0, le=90 * 86400, description="seconds from now")
    comment: StoredText = Field(min_length=1, max_length=1000)

    @field_validator("matchers")
    @classmethod
    def _parse(cls, matchers: dict[str, str]) -> dict[str, str]:
        for name, spec in matchers.items():
            LabelMatcher.parse(name, spec)
        return matchers


@router.post("/silences", status_code=status.HTTP_201_CREATED)
async def add_silence(request: Request, body: NewSilence, caller: Operator) -> dict[str, Any]:
    """Matching alerts start no actions (status shield) and send no cards until it ends."""
    now = utcnow()
    row = {
        "matchers": body.matchers,
        "starts_at": now,
        "ends_at": now + timedelta(seconds=body.duration),
        "created_by": caller.name,
        "comment": body.comment,
        "created_at": now,
    }
    async with _heal(request).db.write() as connection:
        silence_id = await silences_repo.add(connection, row)
    return views.plain({"id": silence_id, **row})


@router.get("/silences")
async def list_silences(
    request: Request, _caller: Viewer, expired: bool = False
) -> list[dict[str, Any]]:
    async with _heal(request).db.read() as connection:
        rows = await silences_repo.all_silences(connection, expired, utcnow())
    return [views.plain(r) for r in rows]


@router.delete("/silences/{silence_id}", responses={404: {"description": "no active silence"}})
async def expire_silence(request: Request, silence_id: IdPath, _caller: Operator) -> dict[str, Any]:
    now: datetime = utcnow()
    async with _heal(request).db.write() as connection:
        if not await silences_repo.expire(connection, silence_id, now):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active silence {silence_id}")
    return {"id": silence_id, "ends_at": now.isoformat()}
