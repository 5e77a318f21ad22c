"""structlog set-up. Every line passes through the secret redactor last."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from heal.domain.redaction import Redactor

_redactor = Redactor()


def set_redactor(redactor: Redactor) -> None:
    """Log through the app's own redactor, so what it learns at run time (a node's Basic
    credential) is masked in log lines too, and its derived forms are computed once."""
    global _redactor
    _redactor = redactor


def redactor() -> Redactor:
    """The app's redactor (set at start-up), for code that writes text where no redactor
    was handed down."""
    return _redactor


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _redactor:
        return event
    return {key: _redactor(value) for key, value in event.items()}


class _RedactingFilter(logging.Filter):
    """The same redaction for the standard library's records (uvicorn, procrastinate…)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _redactor:
            record.msg = _redactor.text(record.getMessage())
            record.args = None
        return True


def configure(level: str = "INFO", json: bool = False) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactingFilter) for f in handler.filters):
            handler.addFilter(_RedactingFilter())
    # One line per outbound request and per migration step is noise at INFO; heal's own
    # timeline and metrics say what happened.
    for chatty in ("httpx", "httpcore", "alembic", "procrastinate"):
        logging.getLogger(chatty).setLevel(
            max(logging.WARNING, logging.getLevelName(level.upper()))
        )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
