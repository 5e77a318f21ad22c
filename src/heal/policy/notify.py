"""The ``notify`` action type's keys: a step that queues one message for a channel of
``notifications.channels`` (or the settings' slack or telegram chat), so a policy can page
people as a step of its own."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from heal.policy.base import Template
from heal.policy.models import ActionBase, ExecutorStep, Step


class NotifyAction(ActionBase):
    """Queue a message for a channel, delivered through the notifications outbox."""

    type: Literal["notify"]
    """notify: queue one message (webhook, discord, teams, email, slack or telegram) as a
    step; the step succeeds once the message is queued durably."""
    channel: str
    """The channel: a name under notifications.channels, or slack / telegram (the chats
    configured by settings; threaded under the incident's card when it has one)."""
    title: Template = "{{ incident.title }}"
    """The message's title (an email's subject), a template."""
    message: Template
    """The message's text, a template (alert, incident, settings, outputs of earlier steps)."""
    request_timeout: Annotated[float, Field(gt=0, le=120)] = 15.0
    """Seconds the step may take to queue the message before it counts as failed (retried
    as failed_retry says); the delivery itself is the outbox's, with its own retries."""

    @property
    def steps(self) -> list[Step]:
        return [
            ExecutorStep(
                function="send",
                name=f"notify {self.channel}",
                timeout=self.request_timeout + 5,
            )
        ]
