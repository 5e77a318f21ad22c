"""The ``notify`` action type: one step that sends a message through a routed channel.

The step is safe to run again with the same idempotency key: it is the message's delivery
id (a webhook body's ``id``, an email's ``Message-ID``), so a receiver recognises the
repeat of a run heal could not record. A refusal that cannot succeed later (a 4xx, a
secret not set) fails the step for good; anything else is retried as ``failed_retry``
says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult, PluginContext
from heal.notify.build import Unusable, channel_from
from heal.notify.channels import ChannelError
from heal.notify.webhooks import EventChannel, Message
from heal.policy.expressions import ExpressionError, render
from heal.policy.models import Policy
from heal.policy.notify import NotifyAction


class NotifyPlugin:
    type = "notify"

    def __init__(self, context: PluginContext) -> None:
        self._policy = context.policy
        self._secrets: Mapping[str, str] = context.secrets
        self._built: dict[str, tuple[Any, EventChannel]] = {}

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
        channel = self._channel(config.channel, self._policy())
        message = Message(call.idempotency_key, "notify", title, text, _payload(call))
        try:
            async with asyncio.timeout(config.request_timeout):
                await channel.send(message, now=time.time())
        except TimeoutError:
            raise NodeFailed(f"channel {config.channel}: no answer", inputs=inputs) from None
        except ChannelError as exc:
            raise NodeFailed(str(exc), inputs=inputs, permanent=exc.permanent) from None
        return NodeResult(inputs=inputs, outputs={"notified": config.channel})

    def _channel(self, name: str, policy: Policy) -> EventChannel:
        config = policy.notifications.channels.get(name)
        if config is None:
            raise NodeFailed(f"channel {name} is not under notifications.channels", permanent=True)
        built = self._built.get(name)
        if built is not None and built[0] == config:
            return built[1]
        try:
            channel = channel_from(name, config.model_dump(), self._secrets)
        except Unusable as exc:
            raise NodeFailed(str(exc), permanent=True) from None
        self._built[name] = (config, channel)
        return channel

    async def cancel(self, call: NodeCall) -> str | None:
        return None  # a message sent is sent

    async def aclose(self) -> None:
        for _, channel in self._built.values():
            await channel.aclose()
        self._built.clear()


def _payload(call: NodeCall) -> dict[str, Any]:
    incident = call.context.get("incident") or {}
    action = call.context.get("action") or {}
    return {
        "incident": {k: incident.get(k) for k in ("id", "title", "status", "severity")},
        "action": {"id": call.action_id, "name": action.get("name")},
    }
