"""Action instance statuses and failure types (DESIGN.md, "Action statuses")."""

from __future__ import annotations

from enum import StrEnum


class ActionStatus(StrEnum):
    RECEIVED = "received"
    CONVERGING = "converging"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"
    SHIELD = "shield"
    BLOCKED = "blocked"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        ActionStatus.SUCCESS,
        ActionStatus.FAILURE,
        ActionStatus.SKIPPED,
        ActionStatus.SHIELD,
        ActionStatus.BLOCKED,
    }
)
IN_FLIGHT_STATUSES = frozenset(set(ActionStatus) - TERMINAL_STATUSES)


class FailureType(StrEnum):
    TIMEOUT = "timeout"
    EXECUTE_FAILURE = "execute_failure"
    CREATE_FAILURE = "create_failure"
    FRAMEWORK_CODE_FAILURE = "framework_code_failure"
    CALLBACK_FAILURE = "callback_failure"
    USER_ABORT = "user_abort"
    SYSTEM_ABORT = "system_abort"
    BLOCKED = "blocked"
    # heal stopped while a step that is not idempotent ran: it was not run again.
    OUTCOME_UNKNOWN = "outcome_unknown"


class Signal(StrEnum):
    """Which change of an alert starts an action."""

    FIRING = "firing"
    RESOLVED = "resolved"


# Unexpected errors in heal's own code: retried this many times, this far apart.
FRAMEWORK_MAX_ATTEMPTS = 3
FRAMEWORK_RETRY_SECONDS = 5.0


def idempotency_key(action_id: int, node: str, attempt: int, poll: int) -> str:
    """Stable across a crash and replay of the same step, new for each retry or poll."""
    return f"heal-{action_id}-{node}-a{attempt}-p{poll}"
