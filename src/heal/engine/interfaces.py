"""What the engine needs from plugins and runtimes, and nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.policy.models import Node

if TYPE_CHECKING:
    from heal.engine.machine import ActionState


class NodeFailed(Exception):
    """The remote system refused or failed the step: the node fails with this message.

    Plugins raise it for API errors, non-2xx answers and bad node inputs. Any other
    exception from a plugin counts as a bug in heal and is retried as such.
    """

    def __init__(self, message: str, *, inputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.inputs = dict(inputs or {})


@dataclass(frozen=True, slots=True)
class NodeCall:
    action_id: int
    node: Node
    context: Mapping[str, Any]
    secrets: Mapping[str, str]
    idempotency_key: str
    timeout: float


@dataclass(frozen=True, slots=True)
class NodeResult:
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


class ActionPlugin(Protocol):
    """Runs one node of an action. Must be safe to call again with the same key."""

    type: str

    async def run_node(self, call: NodeCall) -> NodeResult: ...


class WakeScheduler(Protocol):
    """Where wakes live. The engine never knows which runtime it runs on."""

    async def schedule(
        self, connection: AsyncConnection, action_id: int, version: int, at: datetime
    ) -> None:
        """Record the action's next wake inside the caller's transaction."""

    def committed(self, at: datetime) -> None:
        """Told after the transaction that scheduled a wake at ``at`` has committed."""


class TransitionHook(Protocol):
    """Told of every status change, inside the transaction that commits it."""

    async def on_transition(
        self,
        connection: AsyncConnection,
        before: dict[str, Any],
        after: ActionState,
        now: datetime,
    ) -> None: ...
