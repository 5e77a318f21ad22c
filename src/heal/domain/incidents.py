"""Incidents: alerts grouped by a rule's ``group_by`` labels."""

from __future__ import annotations

import json
from enum import StrEnum

from heal.domain.bounds import GROUP_KEY_MAX, TITLE_MAX, bounded_key, bounded_text


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


# Highest first; anything unknown ranks below "info".
SEVERITY_RANK = {
    "critical": 5,
    "page": 5,
    "error": 4,
    "high": 4,
    "warning": 3,
    "medium": 3,
    "low": 2,
    "info": 1,
    "none": 0,
}


def severity_rank(severity: str | None) -> int:
    return SEVERITY_RANK.get((severity or "").lower(), 0)


def worse_severity(current: str | None, incoming: str | None) -> str | None:
    if incoming is None:
        return current
    if current is None or severity_rank(incoming) > severity_rank(current):
        return incoming
    return current


def group_key(owner: str, group_by: list[str], labels: dict[str, str]) -> str:
    """The key under which an alert joins an open incident.

    ``owner`` is the rule that owns the alert (or ``"*"`` for unmatched alerts); two rules
    grouping by the same labels never share incidents. A key longer than its column is
    hashed, so that long label values still group.
    """
    values = {name: labels.get(name, "") for name in sorted(group_by)}
    key = f"{owner}|{json.dumps(values, sort_keys=True, separators=(',', ':'))}"
    return bounded_key(key, GROUP_KEY_MAX)


def incident_title(group_by: list[str], labels: dict[str, str]) -> str:
    name = labels.get("alertname", "alert")
    detail = ", ".join(f"{k}={labels[k]}" for k in group_by if k != "alertname" and k in labels)
    return bounded_text(f"{name} ({detail})" if detail else name, TITLE_MAX)
