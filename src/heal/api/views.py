"""Rows as the API shows them: JSON-safe, internal bookkeeping left out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from heal.engine.create import step_functions

_ACTION_INTERNAL = {"claimed_until", "inflight_key", "context", "config"}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def incident(row: dict[str, Any], action_counts: dict[str, int] | None = None) -> dict[str, Any]:
    view = {k: _jsonable(v) for k, v in row.items() if k != "open_key"}
    if action_counts is not None:
        view["actions"] = action_counts
    return view


def plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in row.items()}


def alert(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in row.items()}


def action(row: dict[str, Any]) -> dict[str, Any]:
    view = {k: _jsonable(v) for k, v in row.items() if k not in _ACTION_INTERNAL}
    config = row.get("config") or {}
    view["execute_config"] = config.get("execute_config", {})
    view["nodes"] = step_functions(config["action"]) if "action" in config else []
    view["alert"] = (row.get("context") or {}).get("alert")
    return view


def event(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in row.items()}


def decision(row: dict[str, Any]) -> dict[str, Any]:
    """A decision without its lease bookkeeping."""
    return {k: _jsonable(v) for k, v in row.items() if k not in ("claimed_until", "version")}
