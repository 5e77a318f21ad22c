"""Circuit breakers: the ones that opened, and an operator's reset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from heal.api.auth import Operator, Viewer
from heal.api.schemas import VALIDATION_ERRORS, IdPath
from heal.app import Heal
from heal.governors import breakers

router = APIRouter(prefix="/api/v1", tags=["breakers"], responses=VALIDATION_ERRORS)


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "action": row["action_name"],
        "target": row["target"] or None,
        "open": row["open"],
        "failures": row["failures"],
        "opened_at": row["opened_at"].isoformat(),
        "closes_at": row["closes_at"].isoformat(),
        "reset_by": row["reset_by"],
        "reset_at": row["reset_at"].isoformat() if row["reset_at"] else None,
    }


@router.get("/breakers")
async def list_breakers(request: Request, _caller: Viewer) -> list[dict[str, Any]]:
    """Every circuit breaker that opened once (per action and target), the open ones first:
    an open one blocks new actions there until ``closes_at`` or a reset."""
    heal: Heal = request.app.state.heal
    async with heal.db.read() as connection:
        rows = await breakers.listing(connection, heal.engine.clock())
    return [_view(row) for row in rows]


@router.post("/breakers/{breaker_id}/reset", responses={404: {"description": "no such breaker"}})
async def reset_breaker(request: Request, breaker_id: IdPath, caller: Operator) -> dict[str, Any]:
    """Close the breaker now: actions on its target may run again, and only failures from
    now on count towards opening it again."""
    heal: Heal = request.app.state.heal
    now = heal.engine.clock()
    async with heal.db.write() as connection:
        found = await breakers.reset(connection, breaker_id, caller.name, now, heal.engine.redact)
        rows = await breakers.listing(connection, now) if found else []
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"breaker {breaker_id} not found")
    return _view(next(row for row in rows if row["id"] == breaker_id))
