"""Kinds of entries on an incident's append-only timeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    ALERT_RECEIVED = "alert.received"
    ALERT_RESOLVED = "alert.resolved"
    INCIDENT_OPENED = "incident.opened"
    INCIDENT_RESOLVED = "incident.resolved"
    RULE_MATCHED = "rule.matched"
    RULE_SKIPPED = "rule.skipped"
    ACTION_CREATED = "action.created"
    ACTION_JOINED = "action.joined"
    ACTION_STATUS = "action.status"
    # An action failed and its ``fallback`` was started (or, with the reason, was not).
    ACTION_FALLBACK = "action.fallback"
    NODE_STARTED = "node.started"
    NODE_FINISHED = "node.finished"
    NODE_FAILED = "node.failed"
    NODE_RETRY = "node.retry"
    NODE_LOG = "node.log"
    STALE_RESULT = "node.stale_result"
    WAKE_RECOVERED = "action.wake_recovered"
    COMMIT_RETRIED = "action.commit_retried"
    # Verification of fixes: the outcome beside the status, and people's ratings.
    ACTION_OUTCOME = "action.outcome"
    INCIDENT_RATED = "incident.rated"
    # Deciding: a decision opened (or joined), each tier tried, the verdict.
    DECISION_OPENED = "decision.opened"
    DECISION_JOINED = "decision.joined"
    DECISION_TIER = "decision.tier"
    DECISION_MADE = "decision.made"
    DECISION_FAILED = "decision.failed"
    # Circuit breakers: opened by an action's failures, reset by an operator.
    BREAKER_OPENED = "breaker.opened"
    BREAKER_RESET = "breaker.reset"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    kind: EventKind
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    action_id: int | None = None
