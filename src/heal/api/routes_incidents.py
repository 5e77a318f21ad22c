"""Incidents and actions: read them, cancel an action."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from heal.api import views
from heal.api.auth import Operator, Viewer
from heal.api.schemas import (
    VALIDATION_ERRORS,
    CancelRequest,
    CursorQuery,
    IdPath,
    Page,
    RatingRequest,
    StoredText,
    UtcDatetime,
)
from heal.app import Heal
from heal.domain.incidents import IncidentStatus
from heal.engine.engine import ActionNotFound
from heal.store import actions_repo, alerts_repo, decisions_repo, incidents_repo, timeline_repo
from heal.store import verifications_repo as verify_repo
from heal.verify.ratings import (
    IncidentNotFound,
    outcome_fields,
    outcomes_by_action,
    rate,
    remediation,
)

router = APIRouter(prefix="/api/v1", tags=["incidents"], responses=VALIDATION_ERRORS)


def _heal(request: Request) -> Heal:
    heal: Heal = request.app.state.heal
    return heal


@router.get("/incidents")
async def list_incidents(
    request: Request,
    _caller: Viewer,
    status_: Annotated[IncidentStatus | None, Query(alias="status")] = None,
    severity: StoredText | None = None,
    since: UtcDatetime | None = None,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    async with _heal(request).db.read() as connection:
        rows = await incidents_repo.page(
            connection,
            status=status_.value if status_ else None,
            severity=severity,
            since=since,
            before_id=cursor,
            limit=limit,
        )
        counts = await incidents_repo.action_counts(connection, [r["id"] for r in rows])
    items = [views.incident(r, counts.get(r["id"], {})) for r in rows]
    return Page(items=items, next_cursor=rows[-1]["id"] if len(rows) == limit else None)


@router.get("/incidents/{incident_id}", responses={404: {"description": "no such incident"}})
async def get_incident(request: Request, incident_id: IdPath, _caller: Viewer) -> dict[str, Any]:
    async with _heal(request).db.read() as connection:
        row = await incidents_repo.get(connection, incident_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"incident {incident_id} not found")
        alerts = await alerts_repo.for_incident(connection, incident_id)
        decisions = await decisions_repo.for_incident(connection, incident_id)
        actions = await incidents_repo.actions_of(connection, incident_id)
        timeline = await timeline_repo.for_incident(connection, incident_id)
        outcomes = await outcomes_by_action(connection, incident_id)
        summary = await remediation(connection, row)
    return {
        **views.incident(row),
        **summary,
        "alerts": [views.alert(a) for a in alerts],
        "decisions": [views.decision(d) for d in decisions],
        "actions": [{**views.action(a), **outcome_fields(outcomes.get(a["id"]))} for a in actions],
        "timeline": [views.event(e) for e in timeline],
    }


@router.post(
    "/incidents/{incident_id}/rating",
    responses={
        403: {"description": "not a person, or the token lacks the operate scope"},
        404: {"description": "no such incident"},
    },
)
async def rate_incident(
    request: Request, incident_id: IdPath, caller: Operator, body: RatingRequest
) -> dict[str, Any]:
    """Rate the incident's remediation 1-5 (your earlier rating is replaced). The latest
    rating is the remediation's effectiveness score; the answer is the new summary."""
    if caller.service:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only people rate a remediation")
    heal = _heal(request)
    try:
        summary = await rate(
            heal.db,
            incident_id,
            caller.name,
            body.score,
            body.comment,
            heal.verification.clock(),
            heal.engine.redact,
        )
    except IncidentNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"incident {incident_id} not found"
        ) from None
    return {"id": incident_id, **summary}


@router.get("/actions/{action_id}", responses={404: {"description": "no such action"}})
async def get_action(request: Request, action_id: IdPath, _caller: Viewer) -> dict[str, Any]:
    async with _heal(request).db.read() as connection:
        row = await actions_repo.load(connection, action_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"action {action_id} not found")
        timeline = await timeline_repo.for_action(connection, action_id)
        watch = await verify_repo.for_action(connection, action_id)
    return {
        **views.action(row),
        **outcome_fields(watch),
        "timeline": [views.event(e) for e in timeline],
    }


@router.post(
    "/actions/{action_id}/cancel",
    responses={
        404: {"description": "no such action"},
        409: {"description": "the action already finished"},
    },
)
async def cancel_action(
    request: Request, action_id: IdPath, caller: Operator, body: CancelRequest | None = None
) -> dict[str, Any]:
    """Cancel an in-flight action: it ends as ``failure/user_abort``."""
    try:
        result = await _heal(request).engine.cancel(
            action_id, who=caller.name, reason=body.reason if body else ""
        )
    except ActionNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"action {action_id} not found") from None
    if not result.cancelled:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"action {action_id} already finished with status {result.status.value}",
        )
    return {"id": action_id, "status": result.status.value, "failure_type": "user_abort"}
