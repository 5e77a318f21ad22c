"""Alerts as heal sees them, whatever door they came in by."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from heal.domain.bounds import (
    FINGERPRINT_MAX,
    SEVERITY_MAX,
    Unstorable,
    bounded_key,
    storable_text,
)


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
    # surrogatepass: a lone surrogate is refused later, by admit(), naming its label.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class AlertsRefused(ValueError):
    """Alerts of a batch that cannot be stored: (index in the batch, the refusal)."""

    def __init__(self, refusals: list[tuple[int, Unstorable]]) -> None:
        super().__init__("; ".join(f"alert {i}: {r}" for i, r in refusals))
        self.refusals = refusals


def admit(alert: Alert) -> Alert:
    """The alert as heal stores it on every backend, or :class:`Unstorable` naming the field.

    Text is stored with NULs escaped; a fingerprint over its column is hashed (it is a
    key); a severity over its column is refused (it is shown and compared, so neither a
    hash nor a cut would mean what the sender meant).
    """
    labels = _storable_map(alert.labels, "labels")
    severity = labels.get("severity")
    if severity is not None and len(severity) > SEVERITY_MAX:
        raise Unstorable(
            "labels.severity", f"is {len(severity)} characters; at most {SEVERITY_MAX}"
        )
    fingerprint = storable_text(alert.fingerprint, "fingerprint")
    return replace(
        alert,
        fingerprint=bounded_key(fingerprint, FINGERPRINT_MAX),
        labels=labels,
        annotations=_storable_map(alert.annotations, "annotations"),
        generator_url=(
            storable_text(alert.generator_url, "generator_url") if alert.generator_url else None
        ),
    )


def admit_all(batch: list[Alert]) -> list[Alert]:
    """Every alert admitted, or :class:`AlertsRefused` naming each one refused."""
    admitted: list[Alert] = []
    refusals: list[tuple[int, Unstorable]] = []
    for index, alert in enumerate(batch):
        try:
            admitted.append(admit(alert))
        except Unstorable as refusal:
            refusals.append((index, refusal))
    if refusals:
        raise AlertsRefused(refusals)
    return admitted


def _storable_map(values: dict[str, str], field: str) -> dict[str, str]:
    stored: dict[str, str] = {}
    for key, value in values.items():
        name = storable_text(key, f"{field}.{key!a}")
        stored[name] = storable_text(value, f"{field}.{name}")
    if len(stored) < len(values):
        raise Unstorable(field, "two names are the same once NUL is escaped")
    return stored


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
