"""What the engine needs from plugins and runtimes, and nothing more."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.redaction import Redactor
from heal.policy.models import ActionBase, Policy, Step

if TYPE_CHECKING:
    from heal.engine.machine import ActionState


class NodeFailed(Exception):
    """The remote system refused or failed the step: the node fails with this message.

    Plugins raise it for API errors, non-2xx answers and bad node inputs. Any other
    exception from a plugin counts as a bug in heal and is retried as such. ``permanent``:
    running the step again cannot help (the object does not exist, access is forbidden, the
    host key is unknown), so the action fails at once, whatever ``failed_retry`` says.
    ``outputs``: what the step learned before it failed (kept, and on the timeline).
    """

    def __init__(
        self,
        message: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.inputs = dict(inputs or {})
        self.outputs = dict(outputs or {})
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class NodeCall:
    """One run of one step. ``context``: what templates see (``Engine._context``);
    ``idempotency_key`` is the same when a run is repeated after a crash, and new for each
    retry (``attempt``) and poll."""

    action_id: int
    node: Step
    context: Mapping[str, Any]
    secrets: Mapping[str, str]
    idempotency_key: str
    timeout: float
    config: ActionBase | None = None
    attempt: int = 0
    poll: int = 0


@dataclass(frozen=True, slots=True)
class NodeResult:
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


class ActionPlugin(Protocol):
    """Runs one step of an action. Must be safe to call again with the same key, unless
    the step says ``idempotent: false`` (the engine then never repeats it)."""

    type: str

    async def run_node(self, call: NodeCall) -> NodeResult: ...

    async def cancel(self, call: NodeCall) -> str | None:
        """The action was cancelled while ``call.node`` was its current step: stop the
        remote work if there is any (e.g. cancel an execution). Returns what was done,
        for the timeline, or None when there was nothing to stop."""
        ...

    async def aclose(self) -> None: ...


class Unroutable(Exception):
    """The outbox has no such channel here (not in the policy, a chat not configured)."""


class MessageOutbox(Protocol):
    """The durable outbox of notifications, for a step whose work is a message: queued in
    a transaction of its own, sent after it with retries, rate limits and a delivery
    record, like every routed notification."""

    async def queue(
        self,
        *,
        key: str,
        incident_id: int,
        action_id: int,
        channel: str,
        title: str,
        text: str,
        payload: Mapping[str, Any],
    ) -> int:
        """Queue the message for ``channel`` once per ``key`` (a repeat returns the first
        one's id); its delivery id. Raises ``Unroutable`` for a channel it cannot serve."""
        ...


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a plugin's factory gets when heal starts (``PluginSpec.runner``)."""

    policy: Callable[[], Policy]
    """The policy in force now (it can be reloaded): read sections such as kubernetes."""
    secrets: Mapping[str, str]
    redact: Redactor
    outbox: MessageOutbox | None = None
    """Where a step's message is queued for delivery (None: this process has none)."""


class WakeScheduler(Protocol):
    """Where wakes live. The engine never knows which runtime it runs on."""

    async def schedule(
        self, connection: AsyncConnection, action_id: int, version: int, at: datetime
    ) -> None:
        """Record the action's next wake inside the caller's transaction."""

    def committed(self, at: datetime) -> None:
        """Told after the transaction that scheduled a wake at ``at`` has committed."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A start guard's answer when an action may not start now: it waits until ``until``
    (its target is busy), or ends with ``status`` when ``until`` is None."""

    message: str
    until: datetime | None = None
    status: str = "skipped"


class StartGuard(Protocol):
    """Asked, in a write transaction of its own, before an action's first step runs: what
    it writes there (a lease on the action's target) commits before the step runs."""

    def guards(self, config: ActionBase) -> bool:
        """Whether actions of this config are guarded at all (the others start at once,
        without the extra transaction)."""

    async def admit(
        self, connection: AsyncConnection, action_id: int, config: ActionBase, now: datetime
    ) -> Hold | None:
        """None: the action may start (its lease is taken); else why not."""


class TransitionHook(Protocol):
    """Told of every status change, inside the transaction that commits it."""

    async def on_transition(
        self,
        connection: AsyncConnection,
        before: dict[str, Any],
        after: ActionState,
        now: datetime,
    ) -> None: ...
