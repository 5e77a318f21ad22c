"""The ``notify`` action type's keys: a step that sends one message through a channel of
``notifications.channels``, so a policy can page people as a step of its own."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from heal.policy.base import Template
from heal.policy.models import ActionBase, ExecutorStep, Step


class NotifyAction(ActionBase):
    """Send a message through a channel named under notifications.channels."""

    type: Literal["notify"]
    """notify: send one message (webhook, discord, teams or email) as a step."""
    channel: str
    """The channel, by its name under notifications.channels (not slack/telegram: route an
    event to those)."""
    title: Template = "{{ incident.title }}"
    """The message's title (an email's subject), a template."""
    message: Template
    """The message's text, a template (alert, incident, settings, outputs of earlier steps)."""
    request_timeout: Annotated[float, Field(gt=0, le=120)] = 15.0
    """Seconds the step waits for the channel before it counts as failed (retried as
    failed_retry says)."""

    @property
    def steps(self) -> list[Step]:
        return [
            ExecutorStep(
                function="send",
                name=f"notify {self.channel}",
                timeout=self.request_timeout + 5,
            )
        ]
