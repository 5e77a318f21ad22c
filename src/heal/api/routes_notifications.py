"""Delivery records: what heal told whom, through which channel, and how it went."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from heal.api.auth import Viewer
from heal.api.schemas import ID_MAX, VALIDATION_ERRORS, StoredText
from heal.app import Heal
from heal.approvals.notices import delivery_record
from heal.store import notifications_repo

router = APIRouter(prefix="/api/v1", tags=["notifications"], responses=VALIDATION_ERRORS)

DeliveryStatus = Literal["pending", "sent", "failed", "skipped", "collapsed"]


@router.get("/notifications")
async def list_notifications(
    request: Request,
    _caller: Viewer,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    incident_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    channel: StoredText | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Newest first: one record per routed message and channel, and the chat outbox's
    cards and updates. ``error`` says why a failed one was given up (never a secret)."""
    heal: Heal = request.app.state.heal
    async with heal.db.read() as connection:
        rows = await notifications_repo.listing(
            connection, status=status_, incident_id=incident_id, channel=channel, limit=limit
        )
    return [delivery_record(row) for row in rows]
