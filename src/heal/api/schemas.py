"""Request bodies the API accepts, with the names their senders use."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.domain.bounds import storable_text, utc

# Alertmanager sends Go's zero time for "no end".
_GO_ZERO_YEAR = 1
# Ids are 64-bit signed on both backends (BIGINT; SQLite's INTEGER): a larger one names
# no row, and the database would refuse to compare with it.
ID_MAX = 2**63 - 1


def _text(value: str) -> str:
    return storable_text(value)


# Free text heal stores: NUL escaped and lone surrogates refused, as for alert labels.
StoredText = Annotated[str, AfterValidator(_text)]
# A time that exists in UTC: 9999-12-31T23:00:00-05:00 does not.
UtcDatetime = Annotated[datetime, AfterValidator(utc)]
IdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
CursorQuery = Annotated[
    int | None, Query(ge=1, le=ID_MAX, description="next_cursor of the previous page")
]


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.year <= _GO_ZERO_YEAR:
        return None
    return utc(value)


def _start_time(value: datetime) -> datetime:
    if value.year <= _GO_ZERO_YEAR:
        raise ValueError("must be a real time, not the zero time")
    return utc(value)


def _end_time(value: datetime) -> datetime:
    return value if value.year <= _GO_ZERO_YEAR else utc(value)


# A start must be a real time; an end may be Go's zero time, meaning "no end".
StartTime = Annotated[datetime, AfterValidator(_start_time)]
EndTime = Annotated[datetime, AfterValidator(_end_time)]


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the offending value, or 'body'")
    message: str
    type: str = Field(description="kind of error, e.g. missing, json_invalid, unstorable")


class ValidationErrors(BaseModel):
    """heal's 422 body: every problem found, none of the batch stored."""

    detail: list[FieldError]


class Problem(BaseModel):
    detail: str


# Every operation that validates its input documents heal's 422 body, not FastAPI's.
VALIDATION_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrors, "description": "invalid input; the body says where"}
}


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: StartTime
    endsAt: EndTime | None = None
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


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    starts_at: StartTime
    ends_at: EndTime | None = None
    fingerprint: str | None = Field(
        default=None, min_length=1, description="a longer one than 128 is stored hashed"
    )
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
    reason: StoredText = Field(default="", max_length=1000)


class RatingRequest(BaseModel):
    score: int = Field(ge=1, le=5, description="1 (did not help) to 5 (fixed it)")
    comment: StoredText = Field(default="", max_length=1000)


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: int | None
