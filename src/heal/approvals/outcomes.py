"""The news of an executor action's end, for the incident's chat thread.

Written into the outbox by the transaction that ends the action (the engine's hook), so
the news is as durable as the outcome; the dispatcher threads it under the incident's card.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from heal.engine.machine import ActionState

_SHOWN_STATUSES = {"success": "succeeded", "failure": "failed"}


def outcome_text(before: dict[str, Any], after: ActionState, now: datetime) -> str:
    """One line: what ran, how it ended, how long it took, and the links it produced."""
    what = f"{after.config.type} action {before['action_name']!r}"
    verdict = _SHOWN_STATUSES.get(after.status.value, after.status.value)
    took = _duration(after.started_at, after.finished_at or now)
    text = f"{what} {verdict}{took}"
    if after.message:
        text += f": {after.message}"
    links = links_in(after.outputs)
    if links:
        text += " — " + " ".join(links)
    return text


def links_in(outputs: dict[str, Any]) -> list[str]:
    """The web links a step reported (``url``, ``web_url``, ``*_url``), in output order."""
    return [
        value
        for key, value in outputs.items()
        if (key == "url" or key.endswith("_url"))
        and isinstance(value, str)
        and value.startswith(("http://", "https://"))
    ]


def _duration(started: datetime | None, finished: datetime) -> str:
    if started is None:
        return ""
    seconds = max(0.0, (finished - started).total_seconds())
    if seconds < 90:
        return f" in {seconds:.0f} s"
    return f" in {seconds / 60:.1f} min"
