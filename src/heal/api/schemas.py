"""Request bodies the API accepts, with the names their senders use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from heal.domain.alerts import Alert, AlertStatus, fingerprint_of

# Alertmanager sends Go's zero time for "no end".
_GO_ZERO_YEAR = 1


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.year <= _GO_ZERO_YEAR:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""

    def to_alert(self) -> Alert:
        return _alert(
            self.fingerprint,
            self.status,
            self.labels,
            self.annotations,
            self.startsAt,
            self.endsAt,
            self.generatorURL,
            "alertmanager",
        )


class AlertmanagerWebhook(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(extra="allow")

    version: str = "4"
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert]

    @field_validator("alerts")
    @classmethod
    def _starts_at_set(cls, alerts: list[AlertmanagerAlert]) -> list[AlertmanagerAlert]:
        for alert in alerts:
            if _aware(alert.startsAt) is None:
                raise ValueError("startsAt must be a real time, not the zero time")
        return alerts


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    starts_at: datetime
    ends_at: datetime | None = None
    fingerprint: str | None = Field(default=None, min_length=1, max_length=128)
    generator_url: str | None = None

    def to_alert(self) -> Alert:
        return _alert(
            self.fingerprint,
            self.status,
            self.labels,
            self.annotations,
            self.starts_at,
            self.ends_at,
            self.generator_url,
            "api",
        )


def _alert(
    fingerprint: str | None,
    status: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: datetime,
    ends_at: datetime | None,
    generator_url: str | None,
    source: str,
) -> Alert:
    """The domain alert; a missing fingerprint is derived from the sorted labels."""
    began = _aware(starts_at)
    if began is None:  # refused by validation before this point
        raise ValueError("starts_at is the zero time")
    return Alert(
        fingerprint=fingerprint or fingerprint_of(labels),
        status=AlertStatus(status),
        labels=labels,
        annotations=annotations,
        starts_at=began,
        ends_at=_aware(ends_at),
        generator_url=generator_url or None,
        source=source,
    )


class IngestAccepted(BaseModel):
    received: int
    new: int
    resolved: int
    duplicates: int
    incidents_opened: int
    incidents_resolved: int
    actions_created: int
    actions_joined: int
    incident_ids: list[int]


class CancelRequest(BaseModel):
    reason: str = Field(default="", max_length=1000)


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: int | None
