"""Alert ingest: the Alertmanager webhook and the generic JSON API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, status
from fastapi.exceptions import RequestValidationError

from heal.api.auth import Ingester
from heal.api.schemas import (
    VALIDATION_ERRORS,
    AlertmanagerWebhook,
    GenericAlert,
    IngestAccepted,
)
from heal.app import Heal
from heal.domain.alerts import Alert, AlertsRefused

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], responses=VALIDATION_ERRORS)

_ACCEPTED: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "missing or invalid bearer token"},
    status.HTTP_413_CONTENT_TOO_LARGE: {"description": "body over HEAL_MAX_BODY_BYTES"},
    status.HTTP_422_UNPROCESSABLE_CONTENT: {
        **VALIDATION_ERRORS[status.HTTP_422_UNPROCESSABLE_CONTENT],
        "description": "malformed JSON, a field of the wrong type, or a value heal cannot "
        "store (a severity over 50 characters, a lone surrogate); nothing is stored",
    },
    status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "overloaded: retry after Retry-After"},
}


async def _ingest(
    request: Request, alerts: list[Alert], source: str, where: tuple[str, ...]
) -> IngestAccepted:
    """``where``: the path of the alert list in the body, for naming a refused alert."""
    heal: Heal = request.app.state.heal
    try:
        report = await heal.ingest.ingest(alerts, source)
    except AlertsRefused as refused:
        raise RequestValidationError(
            [
                {
                    "loc": (*where, index, *refusal.field.split(".", 1)),
                    "msg": f"alert {alerts[index].name[:80]!a}: {refusal}",
                    "type": "unstorable",
                }
                for index, refusal in refused.refusals
            ]
        ) from None
    return IngestAccepted(
        received=report.received,
        new=report.new,
        resolved=report.resolved,
        duplicates=report.duplicates,
        incidents_opened=report.incidents_opened,
        incidents_resolved=report.incidents_resolved,
        actions_created=report.actions_created,
        actions_joined=report.actions_joined,
        incident_ids=report.incident_ids,
    )


@router.post("/alertmanager", status_code=status.HTTP_202_ACCEPTED, responses=_ACCEPTED)
async def alertmanager_webhook(
    request: Request, payload: AlertmanagerWebhook, _caller: Ingester
) -> IngestAccepted:
    """Alertmanager's webhook (payload version 4). Answers only once the batch is stored."""
    alerts = [a.to_alert() for a in payload.alerts]
    return await _ingest(request, alerts, "alertmanager", ("alerts",))


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=_ACCEPTED)
async def post_alerts(
    request: Request,
    payload: Annotated[list[GenericAlert], Body(max_length=10_000)],
    _caller: Ingester,
) -> IngestAccepted:
    """A list of alerts: ``{labels, annotations, status, starts_at, ends_at?, fingerprint?}``."""
    return await _ingest(request, [a.to_alert() for a in payload], "api", ())
