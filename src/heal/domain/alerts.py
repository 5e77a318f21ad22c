"""Alerts as heal sees them, whatever door they came in by."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Alert:
    """One notification about one alert; (fingerprint, starts_at) names an occurrence."""

    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str | None = None
    source: str = "api"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def as_context(self) -> dict[str, Any]:
        """The alert as templates and snapshots see it (JSON-safe)."""
        return {
            "fingerprint": self.fingerprint,
            "status": self.status.value,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "generator_url": self.generator_url,
            "source": self.source,
        }


def fingerprint_of(labels: dict[str, str]) -> str:
    """A stable fingerprint from the sorted label set, for sources that send none.

    Alertmanager's own fingerprint is a 64-bit FNV hash rendered as 16 hex digits; we keep
    the same width so both kinds look alike, but use SHA-256 (truncated) because the
    value only has to be stable and collision-resistant, not compatible.
    """
    # JSON escapes every separator, so no two label sets share a canonical form.
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class IngestVerdict(StrEnum):
    """What one notification does to the occurrence it names."""

    NEW_FIRING = "new_firing"  # first sight of a firing occurrence
    NEW_RESOLVED = "new_resolved"  # first sight, already resolved (we missed the firing)
    RESOLVES = "resolves"  # a known firing occurrence resolves
    DUPLICATE = "duplicate"  # redelivery, repeat notification, or a stale replay


def classify(known: AlertStatus | None, incoming: AlertStatus) -> IngestVerdict:
    """An occurrence only moves forward: firing -> resolved. Anything else is a duplicate.

    A firing notification for an occurrence already resolved is a late redelivery (a new
    firing would carry a new ``starts_at``), so it must not reopen anything.
    """
    if known is None:
        return (
            IngestVerdict.NEW_FIRING
            if incoming is AlertStatus.FIRING
            else IngestVerdict.NEW_RESOLVED
        )
    if known is AlertStatus.FIRING and incoming is AlertStatus.RESOLVED:
        return IngestVerdict.RESOLVES
    return IngestVerdict.DUPLICATE
