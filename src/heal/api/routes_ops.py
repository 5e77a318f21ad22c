"""Liveness, readiness and Prometheus metrics (no token: scraped by infrastructure)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from heal.app import Heal
from heal.observability.gauges import exposition
from heal.store import migrate

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the body says why"}})
async def readyz(request: Request) -> Response:
    """Ready to take alerts: the database answers, its schema is current, heal is started."""
    heal: Heal = request.app.state.heal
    problems = []
    try:
        async with heal.db.read() as connection:
            await connection.execute(text("SELECT 1"))
        if await migrate.current_revision(heal.db) != migrate.head_revision():
            problems.append("database schema is not at the current migration")
    except Exception as exc:
        problems.append(f"database unreachable: {type(exc).__name__}")
    if not heal.running:
        problems.append("heal is not started")
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process; the gauges are read from the database."""
    heal: Heal = request.app.state.heal
    return Response(await exposition(heal.db), media_type=CONTENT_TYPE_LATEST)
