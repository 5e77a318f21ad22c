"""The ``notify`` action type: one step that queues a message for a channel.

The step writes the message into the durable outbox (``engine.interfaces.MessageOutbox``)
that routed notifications use, and succeeds once it is queued: delivery then has the
outbox's retries with backoff (Retry-After and 429 honoured), the channel's rate limit
and a delivery record (``heal notifications list``), and a channel that refuses later
never changes the action's outcome. The delivery id is the step's output.

A step run again with the same idempotency key (heal could not record the first run)
finds the message queued under that key and returns its delivery id: it is queued once.
A channel the outbox cannot serve (not in the policy, a chat not configured) fails the
step for good, as does a template that does not render.
"""

from __future__ import annotations

import asyncio
from typing import Any

from heal.engine.interfaces import (
    MessageOutbox,
    NodeCall,
    NodeFailed,
    NodeResult,
    PluginContext,
    Unroutable,
)
from heal.policy.expressions import ExpressionError, render
from heal.policy.notify import NotifyAction


class NotifyPlugin:
    type = "notify"

    def __init__(self, context: PluginContext) -> None:
        self._outbox: MessageOutbox | None = context.outbox

    @classmethod
    def from_context(cls, context: PluginContext) -> NotifyPlugin:
        return cls(context)

    async def run_node(self, call: NodeCall) -> NodeResult:
        config = call.config
        assert isinstance(config, NotifyAction)
        try:
            title = render(config.title, dict(call.context))
            text = render(config.message, dict(call.context))
        except ExpressionError as exc:
            raise NodeFailed(f"bad input: {exc}", permanent=True) from exc
        inputs = {"channel": config.channel, "title": title, "message": text}
        if self._outbox is None:
            raise NodeFailed("this process has no notification outbox", inputs=inputs)
        incident_id = (call.context.get("incident") or {}).get("id")
        if not isinstance(incident_id, int):
            raise NodeFailed("the action has no incident to notify about", permanent=True)
        try:
            async with asyncio.timeout(config.request_timeout):
                delivery_id = await self._outbox.queue(
                    key=call.idempotency_key,
                    incident_id=incident_id,
                    action_id=call.action_id,
                    channel=config.channel,
                    title=title,
                    text=text,
                    payload=_payload(call),
                )
        except Unroutable as exc:
            raise NodeFailed(str(exc), inputs=inputs, permanent=True) from None
        except TimeoutError:
            raise NodeFailed("the outbox did not take the message in time", inputs=inputs) from None
        outputs = {"notified": config.channel, "delivery_id": delivery_id, "delivery": "queued"}
        return NodeResult(inputs=inputs, outputs=outputs)

    async def cancel(self, call: NodeCall) -> str | None:
        return None  # a message queued is queued (it is sent whatever the action does)

    async def aclose(self) -> None:
        return None


def _payload(call: NodeCall) -> dict[str, Any]:
    incident = call.context.get("incident") or {}
    action = call.context.get("action") or {}
    return {
        "incident": {k: incident.get(k) for k in ("id", "title", "status", "severity")},
        "action": {"id": call.action_id, "name": action.get("name"), "rule": action.get("rule")},
    }
