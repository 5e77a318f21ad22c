"""The action state machine, pure: (state, node outcome, now) -> transition.

The engine does the I/O around it: it loads the state, runs the node through a plugin,
hands the outcome here, and commits the transition with the next wake.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from heal.domain.actions import ActionStatus, FailureType
from heal.domain.timeline import EventKind, TimelineEntry
from heal.engine.conditions import describe, holds
from heal.policy.expressions import ExpressionError, render
from heal.policy.models import ActionBase, Step

# Unexpected errors in heal's own code are retried this many times, this far apart.
FRAMEWORK_RETRIES = 3
FRAMEWORK_RETRY_DELAY = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class ActionState:
    id: int
    incident_id: int
    name: str
    status: ActionStatus
    version: int
    config: ActionBase
    current_node: str
    attempt: int = 0
    poll: int = 0
    framework_errors: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    pre_node_outputs: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    timeout_at: datetime | None = None
    next_poll_at: datetime | None = None
    approval_expires_at: datetime | None = None
    failure_type: FailureType | None = None
    message: str | None = None
    finished_at: datetime | None = None
    # Set by the transition that decided an approval ("approved", "rejected",
    # "expired"); not stored on the row, read by the approval hook in the same commit.
    approval_outcome: str | None = None

    @property
    def node(self) -> Step:
        return self.config.node(self.current_node)

    @property
    def next_wake_at(self) -> datetime | None:
        if self.status.is_terminal:
            return None
        deadlines = [d for d in (self.next_poll_at, self.timeout_at, self.approval_expires_at) if d]
        return min(deadlines) if deadlines else None


class Due(Enum):
    NOTHING = "nothing"  # terminal: the wake is stale
    TIMEOUT = "timeout"
    APPROVAL_EXPIRED = "approval_expired"
    RUN_NODE = "run_node"
    NOT_YET = "not_yet"


def due(state: ActionState, now: datetime) -> Due:
    if state.status.is_terminal:
        return Due.NOTHING
    if state.timeout_at is not None and now >= state.timeout_at:
        return Due.TIMEOUT
    if state.status is ActionStatus.WAITING:
        if state.approval_expires_at is not None and now >= state.approval_expires_at:
            return Due.APPROVAL_EXPIRED
        asking = state.config.in_approval_phase(state.current_node)
        if asking and state.next_poll_at is not None and now >= state.next_poll_at:
            return Due.RUN_NODE  # an ITSM approval ticket's node
        return Due.NOT_YET
    if state.next_poll_at is not None and now >= state.next_poll_at:
        return Due.RUN_NODE
    return Due.NOT_YET


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    """What running the current node produced.

    ``failed``: the remote side refused (node failure, ``failed_retry`` applies unless
    ``permanent``). ``error``: heal's own code raised (framework retry, then
    ``framework_code_failure``).
    """

    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    failed: str | None = None
    error: str | None = None
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    state: ActionState
    events: list[TimelineEntry]


class _Builder:
    def __init__(self, state: ActionState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.events: list[TimelineEntry] = []

    def event(self, kind: EventKind, message: str, **data: Any) -> None:
        self.events.append(TimelineEntry(kind, message, data, action_id=self.state.id))

    def update(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def finish(self, status: ActionStatus, failure: FailureType | None, message: str) -> None:
        self.update(
            status=status,
            failure_type=failure,
            message=message,
            finished_at=self.now,
            next_poll_at=None,
        )
        detail = f"{status.value}/{failure.value}" if failure else status.value
        self.event(
            EventKind.ACTION_STATUS,
            f"action {self.state.name!r} {detail}: {message}",
            status=status.value,
            failure_type=failure.value if failure else None,
        )

    def done(self) -> Transition:
        return Transition(self.state, self.events)


def start_running(state: ActionState, now: datetime) -> Transition:
    """received -> running: the timeout clock starts when work starts."""
    b = _Builder(state, now)
    b.update(
        status=ActionStatus.RUNNING,
        started_at=now,
        timeout_at=now + timedelta(seconds=state.config.deadline_seconds),
        message=None,  # what a delayed start said (a busy target) is over
    )
    b.event(EventKind.ACTION_STATUS, f"action {state.name!r} running", status="running")
    return b.done()


def hold(state: ActionState, now: datetime, until: datetime, message: str) -> Transition:
    """A received action whose start must wait (its target is busy): it stays received,
    looks again at ``until``; the timeline says so once, not at every look."""
    b = _Builder(state, now)
    b.update(next_poll_at=until, message=message)
    if state.message != message:
        b.event(
            EventKind.ACTION_STATUS, f"action {state.name!r} delayed: {message}", status="received"
        )
    return b.done()


def refuse(state: ActionState, now: datetime, status: ActionStatus, message: str) -> Transition:
    """A received action that may not start at all: skipped or blocked, never run."""
    b = _Builder(state, now)
    b.finish(status, FailureType.BLOCKED if status is ActionStatus.BLOCKED else None, message)
    return b.done()


def time_out(state: ActionState, now: datetime) -> Transition:
    b = _Builder(state, now)
    b.finish(
        ActionStatus.FAILURE,
        FailureType.TIMEOUT,
        f"did not finish within {state.config.deadline_seconds:g} s (node {state.current_node!r})",
    )
    return b.done()


def cancel(state: ActionState, now: datetime, who: str, reason: str) -> Transition:
    b = _Builder(state, now)
    why = f": {reason}" if reason else ""
    b.finish(ActionStatus.FAILURE, FailureType.USER_ABORT, f"cancelled by {who}{why}")
    return b.done()


def outcome_unknown(state: ActionState, now: datetime) -> Transition:
    """heal stopped while a step that is not idempotent ran: it may or may not have run,
    so it is not run again, and the action fails saying so."""
    b = _Builder(state, now)
    node = state.node
    message = (
        f"{node.name}: heal stopped while it was running, so whether it ran is unknown; "
        "it is not idempotent, so it was not run again (check the target, then re-run "
        "the action by hand if needed)"
    )
    b.event(EventKind.NODE_FAILED, message, node=node.function, attempt=state.attempt)
    b.finish(ActionStatus.FAILURE, FailureType.OUTCOME_UNKNOWN, message)
    return b.done()


def expire_approval(state: ActionState, now: datetime) -> Transition:
    b = _Builder(state, now)
    b.finish(ActionStatus.SKIPPED, None, "approval expired (disposition: timeout)")
    b.update(approval_outcome="expired")
    return b.done()


def advance(
    state: ActionState,
    outcome: NodeOutcome,
    now: datetime,
    log_context: dict[str, Any] | None = None,
) -> Transition:
    """Apply the outcome of one run of the current node."""
    b = _Builder(state, now)
    node = state.node
    if state.poll == 0 and state.framework_errors == 0:
        b.event(
            EventKind.NODE_STARTED,
            f"{node.name} started",
            node=node.function,
            attempt=state.attempt,
            inputs=outcome.inputs,
        )

    if outcome.error is not None:
        _framework_error(b, node, outcome.error)
        return b.done()
    if outcome.failed is not None:
        if outcome.outputs:
            b.update(outputs={**state.outputs, **outcome.outputs})
        _node_failed(b, node, outcome.failed, permanent=outcome.permanent, outputs=outcome.outputs)
        return b.done()

    node_outputs = outcome.outputs
    b.update(outputs={**state.outputs, **node_outputs}, framework_errors=0)
    finished = node.finished_rule is None or holds(node.finished_rule, node_outputs)
    if not finished and node.need_schedule:
        delay = node.poll_delay(state.poll)
        b.update(poll=state.poll + 1, next_poll_at=now + timedelta(seconds=delay))
        # A wait is silent on the timeline, except when the step says its state changed
        # (an st2 execution now waits on an inquiry): people see why it takes long.
        reported = node_outputs.get("state")
        if reported is not None and reported != state.outputs.get("state"):
            b.event(
                EventKind.NODE_LOG,
                f"{node.name}: {reported}",
                node=node.function,
                poll=state.poll,
                outputs=node_outputs,
            )
        return b.done()
    asking = state.config.in_approval_phase(node.function)
    if finished and node.success_rule is not None and not holds(node.success_rule, node_outputs):
        if asking and node.next_function is None:
            who = node_outputs.get("approver") or "the ITSM approval ticket"
            b.event(
                EventKind.NODE_FINISHED,
                f"{node.name} finished: not approved",
                node=node.function,
                polls=state.poll + 1,
                outputs=node_outputs,
            )
            b.finish(ActionStatus.SKIPPED, None, f"rejected by {who} (ITSM approval ticket)")
            b.update(approval_outcome="rejected")
            return b.done()
        _node_failed(b, node, f"success_rule not met: {describe(node.success_rule, node_outputs)}")
        return b.done()

    b.event(
        EventKind.NODE_FINISHED,
        f"{node.name} finished",
        node=node.function,
        polls=state.poll + 1,
        outputs=node_outputs,
    )
    if node.need_insert_log and node.log_template:
        context = {**(log_context or {}), **b.state.outputs}
        try:
            line = render(node.log_template, context)
        except ExpressionError as exc:
            line = f"(log_template failed: {exc})"
        b.event(EventKind.NODE_LOG, line, node=node.function)
    if node.next_function is not None:
        b.update(
            current_node=node.next_function,
            poll=0,
            attempt=0,
            pre_node_outputs=node_outputs,
            next_poll_at=now,
        )
        return b.done()
    if asking:
        who = node_outputs.get("approver") or "the ITSM approval ticket"
        b.update(
            status=ActionStatus.RECEIVED,
            current_node=state.config.steps[0].function,
            poll=0,
            attempt=0,
            pre_node_outputs=node_outputs,
            next_poll_at=now,
            approval_expires_at=None,
            approval_outcome="approved",
        )
        b.event(
            EventKind.ACTION_STATUS,
            f"approved by {who} (ITSM approval ticket); action will run",
            status="received",
        )
        return b.done()
    b.finish(ActionStatus.SUCCESS, None, f"{node.name} finished")
    return b.done()


def _node_failed(
    b: _Builder,
    node: Step,
    message: str,
    *,
    permanent: bool = False,
    outputs: dict[str, Any] | None = None,
) -> None:
    state = b.state
    data: dict[str, Any] = {"node": node.function, "attempt": state.attempt, "error": message}
    if outputs:
        data["outputs"] = outputs
    b.event(EventKind.NODE_FAILED, f"{node.name} failed: {message}", **data)
    retry = state.config.failed_retry
    if state.attempt < retry.budget and not permanent:
        b.update(
            attempt=state.attempt + 1,
            poll=0,
            framework_errors=0,
            next_poll_at=b.now + timedelta(seconds=retry.retry_interval),
        )
        b.event(
            EventKind.NODE_RETRY,
            f"retry {state.attempt + 1} of {retry.budget} in {retry.retry_interval:g} s",
            node=node.function,
            attempt=state.attempt + 1,
        )
        return
    b.finish(ActionStatus.FAILURE, FailureType.EXECUTE_FAILURE, f"{node.name}: {message}")


def _framework_error(b: _Builder, node: Step, error: str) -> None:
    errors = b.state.framework_errors + 1
    if errors <= FRAMEWORK_RETRIES:
        b.update(framework_errors=errors, next_poll_at=b.now + FRAMEWORK_RETRY_DELAY)
        b.event(
            EventKind.NODE_RETRY,
            f"{node.name}: internal error, retry {errors} of {FRAMEWORK_RETRIES} in "
            f"{FRAMEWORK_RETRY_DELAY.total_seconds():g} s: {error}",
            node=node.function,
            framework_errors=errors,
        )
        return
    b.finish(
        ActionStatus.FAILURE,
        FailureType.FRAMEWORK_CODE_FAILURE,
        f"{node.name}: internal error after {FRAMEWORK_RETRIES} retries: {error}",
    )
