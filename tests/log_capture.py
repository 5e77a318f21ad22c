"""heal's real log configuration (JSON, redaction last), captured for assertions."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from heal.observability import logging as heal_logging


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self, event: str) -> list[dict[str, Any]]:
        """Every JSON line whose event is ``event``."""
        parsed = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [line for line in parsed if line.get("event") == event]


@contextmanager
def captured_logs() -> Iterator[Captured]:
    """Log as ``heal serve`` with HEAL_LOG_JSON does, into a buffer instead of stdout."""
    captured = Captured()
    heal_logging.configure("INFO", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(captured.stream))
    try:
        yield captured
    finally:
        structlog.reset_defaults()
