"""Rows from the database as rich tables: times, statuses and timelines in colour."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from heal.domain.timeline import EventKind

_STATUS_STYLES = {
    "open": "yellow",
    "resolved": "green",
    "firing": "red",
    "success": "green",
    "failure": "red",
    "received": "cyan",
    "converging": "cyan",
    "waiting": "cyan",
    "running": "cyan",
    "skipped": "yellow",
    "shield": "yellow",
    "blocked": "yellow",
    "pending": "cyan",
    "approved": "green",
    "rejected": "red",
    "expired": "yellow",
    "obsolete": "dim",
}
_KIND_STYLES = {
    EventKind.ALERT_RECEIVED.value: "yellow",
    EventKind.ALERT_RESOLVED.value: "green",
    EventKind.INCIDENT_OPENED.value: "magenta",
    EventKind.INCIDENT_RESOLVED.value: "green",
    EventKind.RULE_SKIPPED.value: "yellow",
    EventKind.NODE_FAILED.value: "red",
    EventKind.NODE_RETRY.value: "yellow",
    EventKind.NODE_LOG.value: "bold",
    EventKind.STALE_RESULT.value: "dim",
    EventKind.WAKE_RECOVERED.value: "yellow",
    EventKind.COMMIT_RETRIED.value: "yellow",
    EventKind.ACTION_FALLBACK.value: "magenta",
}


def when(value: datetime | None) -> str:
    """UTC, to the second; '-' for none."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def status(value: str | None) -> Text:
    if not value:
        return Text("-", style="dim")
    return Text(value, style=_STATUS_STYLES.get(value, ""))


def plain(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def labels(values: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((values or {}).items())) or "-"


def matchers(values: Mapping[str, str] | None) -> str:
    """Stored matchers as typed: ``alertname=~Disk.*``, not ``alertname==~Disk.*``."""
    shown = []
    for name, spec in sorted((values or {}).items()):
        operator = next((op for op in ("=~", "!~", "!=") if spec.startswith(op)), "=")
        shown.append(f"{name}{spec}" if operator != "=" else f"{name}={spec}")
    return ", ".join(shown) or "-"


def counts(by_status: Mapping[str, int]) -> Text:
    """``{"success": 1, "running": 2}`` as ``2 running, 1 success`` in colour."""
    if not by_status:
        return Text("-", style="dim")
    text = Text()
    for index, (name, count) in enumerate(sorted(by_status.items())):
        if index:
            text.append(", ")
        text.append(f"{count} {name}", style=_STATUS_STYLES.get(name, ""))
    return text


def fields(pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column ``name  value`` grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in pairs:
        grid.add_row(name, value if isinstance(value, Text) else Text(plain(value)))
    return grid


def event_style(row: Mapping[str, Any]) -> str:
    kind = row["kind"]
    if kind == EventKind.ACTION_STATUS.value:
        return _STATUS_STYLES.get((row.get("data") or {}).get("status", ""), "")
    return _KIND_STYLES.get(kind, "")


def event_message(row: Mapping[str, Any]) -> str:
    message = str(row["message"])
    data = row.get("data") or {}
    polls = data.get("polls") if row["kind"] == EventKind.NODE_FINISHED.value else None
    if isinstance(polls, int) and polls > 1:
        message += f" (after {polls} polls)"
    return message


def timeline(rows: list[dict[str, Any]], title: str = "Timeline") -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("action", justify="right")
    table.add_column("message", overflow="fold")
    for row in rows:
        style = event_style(row)
        table.add_row(
            when(row["at"]),
            Text(row["kind"], style=style),
            plain(row.get("action_id")),
            Text(event_message(row), style=style),
        )
    return table


def markup(value: Any) -> str:
    return escape(plain(value))
