"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

import heal
from heal.api import (
    routes_alerts,
    routes_approvals,
    routes_breakers,
    routes_chat,
    routes_incidents,
    routes_kb,
    routes_notifications,
    routes_ops,
    routes_playbooks,
)
from heal.api.limits import BodySizeLimit
from heal.app import Heal
from heal.observability import metrics
from heal.observability.logging import get_logger
from heal.store.db import Overloaded

log = get_logger("heal.api")
RETRY_AFTER_SECONDS = 5
DOCS_ASSETS = "/docs-assets"


def create_app(heal_app: Heal, *, manage_lifecycle: bool = True, worker: bool = True) -> FastAPI:
    """``manage_lifecycle``: start and stop ``heal_app`` with the server."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await heal_app.start(worker=worker)
        try:
            yield
        finally:
            if manage_lifecycle:
                await heal_app.stop()

    # /docs and /redoc with Swagger UI and ReDoc served by heal itself, not a CDN: the API
    # page must work where heal runs, often without internet.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="heal",
        version=heal.__version__,
        description="Alert-driven self-healing: alerts in, durable audited remediation out.",
        lifespan=lifespan,
    )
    app.state.heal = heal_app
    app.include_router(routes_alerts.router)
    app.include_router(routes_incidents.router)
    app.include_router(routes_approvals.router)
    app.include_router(routes_breakers.router)
    app.include_router(routes_chat.router)
    app.include_router(routes_notifications.router)
    app.include_router(routes_kb.router)
    app.include_router(routes_playbooks.router)
    app.include_router(routes_ops.router)
    app.add_middleware(BodySizeLimit, max_bytes=heal_app.settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.INGEST_REJECTED.labels("invalid").inc()
        errors = [_field_error(e) for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Overloaded)
    async def _overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
        metrics.INGEST_REJECTED.labels("overloaded").inc()
        return _unavailable("overloaded: too many writes queued", exc.retry_after)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(_request: Request, exc: Exception) -> JSONResponse:
        # Nothing was stored (the transaction rolled back): the sender should retry.
        log.warning("database unavailable", error=type(exc).__name__)
        metrics.INGEST_REJECTED.labels("database").inc()
        return _unavailable("database unavailable", RETRY_AFTER_SECONDS)

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return _unavailable("database connection lost", RETRY_AFTER_SECONDS)
        log.error("database error", error=str(exc.orig))
        return JSONResponse({"detail": "internal database error"}, status_code=500)

    return app


def _unavailable(detail: str, retry_after: int) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after)}
    )


def _field_error(error: Any) -> dict[str, Any]:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    return {
        "field": _printable(".".join(loc) or "body"),
        "message": _printable(error.get("msg", "invalid")),
        "type": error.get("type"),
    }


def _printable(text: str) -> str:
    # A field name is the sender's (an unknown key); a lone surrogate in it has no UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
