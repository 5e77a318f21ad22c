"""The events people can be told about, and the one message a channel receives."""

from __future__ import annotations

from enum import StrEnum

from heal.domain.actions import ActionStatus


class Event(StrEnum):
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_RESOLVED = "incident_resolved"
    ACTION_STARTED = "action_started"
    ACTION_SUCCEEDED = "action_succeeded"
    ACTION_FAILED = "action_failed"
    ACTION_BLOCKED = "action_blocked"
    OUTCOME_VERIFIED = "outcome_verified"
    OUTCOME_INEFFECTIVE = "outcome_ineffective"
    OUTCOME_RELAPSED = "outcome_relapsed"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    APPROVAL_EXPIRED = "approval_expired"


# The chats configured by settings (HEAL_SLACK_*, HEAL_TELEGRAM_*), named in routes as is.
CHAT_CHANNELS = frozenset({"slack", "telegram"})

_ENDS = {
    ActionStatus.SUCCESS: Event.ACTION_SUCCEEDED,
    ActionStatus.FAILURE: Event.ACTION_FAILED,
    ActionStatus.BLOCKED: Event.ACTION_BLOCKED,
}
_RAN = frozenset({ActionStatus.RUNNING, ActionStatus.SUCCESS, ActionStatus.FAILURE})


def action_events(before: str, after: ActionStatus) -> list[Event]:
    """The events of an action's move from status ``before`` to ``after``, in order.

    Started is said once, when the first step runs (a one-step action goes from received
    to its end in one move: started, then its end); a polled step running again is no
    new start.
    """
    if before == after.value:
        return []
    found = []
    if before == ActionStatus.RECEIVED.value and after in _RAN:
        found.append(Event.ACTION_STARTED)
    if after in _ENDS:
        found.append(_ENDS[after])
    return found
