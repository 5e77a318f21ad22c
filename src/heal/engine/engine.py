"""The step engine: ``wake(action_id, expected_version)`` and external events.

Each wake reads the action, decides what is due, runs at most one node *outside* any
transaction, then commits the outcome, the timeline entries and the next wake together,
but only if the action's version is still the one it read (DESIGN.md, "The step engine").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from heal.domain.actions import ActionStatus, FailureType, idempotency_key
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.engine import machine
from heal.engine.interfaces import (
    ActionPlugin,
    NodeCall,
    NodeFailed,
    StartGuard,
    TransitionHook,
    WakeScheduler,
)
from heal.engine.machine import ActionState, Due, NodeOutcome, Transition
from heal.observability import metrics
from heal.observability.logging import get_logger
from heal.policy.models import ActionBase, Node
from heal.policy.plugins import parse_action
from heal.store import actions_repo, timeline_repo
from heal.store.db import Database, is_transient

# Snapshots kept: per action (pointers and its small context) and per distinct config.
CONFIG_CACHE_SIZE = 50_000
SNAPSHOT_CACHE_SIZE = 256
# A commit that failed for a lost connection is tried again after these delays (then every
# last one), for as long as the wake's runtime holds it (``commit_retry`` seconds at most).
COMMIT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)

log = get_logger("heal.engine")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ActionNotFound(Exception):
    pass


@dataclass(frozen=True, slots=True)
class CancelResult:
    cancelled: bool
    status: ActionStatus


class Engine:
    def __init__(
        self,
        database: Database,
        scheduler: WakeScheduler,
        plugins: Mapping[str, ActionPlugin],
        secrets: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        hook: TransitionHook | None = None,
        redact: Redactor | None = None,
        commit_retry: float = 120.0,
        guard: StartGuard | None = None,
    ) -> None:
        self.hook = hook
        self.guard = guard
        self.commit_retry = commit_retry
        self.db = database
        self.scheduler = scheduler
        self.plugins = plugins
        self.secrets = dict(secrets or {})
        self.redact = Redactor(self.secrets.values()) if redact is None else redact
        self.clock = clock
        # A snapshot never changes, so its parsed form can be kept per action.
        self._known: OrderedDict[int, _Snapshots] = OrderedDict()
        self._snapshots: OrderedDict[str, tuple[ActionBase, dict[str, Any]]] = OrderedDict()

    # -- wakes ---------------------------------------------------------------------------
    async def wake(
        self,
        action_id: int,
        expected_version: int,
        row: dict[str, Any] | None = None,
        *,
        held_for: float | None = None,
    ) -> None:
        """Do what is due for the action. ``row``: the action as the runtime claimed it,
        which saves reading it again; the commit's version check covers any change since.
        ``held_for``: seconds the runtime holds this wake for (its lease), which bounds how
        long a commit is retried.

        A node's outcome is known once it ran: a commit that fails for a lost connection is
        tried again (see :meth:`_commit`) rather than run the node a second time. An
        exception escaping the wake (the database stayed away, a bug of ours) is logged
        here, once, with what the runtime does not know (the rule), and raised again: the
        runtime's lease or job retry brings the wake back.
        """
        held_until = time.monotonic() + held_for if held_for is not None else float("inf")
        try:
            row = await self._current(action_id, row)
            if row is None or row["version"] != expected_version:
                metrics.STALE_WAKES.inc()
                return
            await self._step(row, held_until)
        except Exception as exc:
            log.error(
                "wake failed",
                action_id=action_id,
                rule=row.get("rule") if row else None,
                action=row.get("action_name") if row else None,
                reason=self.redact.text(_describe(exc)),
                exc_info=True,
            )
            raise

    async def _current(self, action_id: int, row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is not None and "config" not in row:
            row = self._with_snapshots(row)
        if row is None or row["id"] != action_id:
            row = await self._load(action_id)
        return row

    async def _step(self, row: dict[str, Any], held_until: float) -> None:
        action_id = row["id"]
        state = self._state(row)
        now = self.clock()
        what = machine.due(state, now)
        if what is Due.NOTHING:
            return
        if what is Due.TIMEOUT:
            await self._commit(row, machine.time_out(state, now), held_until)
            return
        if what is Due.APPROVAL_EXPIRED:
            expired = await self._expire_approval(row, state, now)
            await self._commit(row, expired, held_until)
            return
        if what is Due.NOT_YET:
            await self._commit(row, Transition(state, []), held_until)
            return

        started: list[TimelineEntry] = []
        if state.status is ActionStatus.RECEIVED:
            held = await self._admit(state, now)
            if held is not None:
                await self._commit(row, held, held_until)
                return
            first = machine.start_running(state, now)
            state, started = first.state, first.events
        if not state.node.idempotent:
            key = _run_key(state)
            if row.get("running_key") == key:  # a run of ours began and never reported
                unknown = machine.outcome_unknown(state, now)
                events = started + unknown.events
                await self._commit(row, Transition(unknown.state, events), held_until)
                return
            if not await self._mark_running(row, key):
                metrics.STALE_WAKES.inc()
                return
        context = self._context(row, state)
        outcome = await self._run_node(state, context, now)
        try:
            transition = machine.advance(state, outcome, self.clock(), context)
        except Exception as exc:  # a bug of ours while interpreting the outcome
            log.error(
                "advance failed",
                action_id=action_id,
                rule=row["rule"],
                action=state.name,
                reason=self.redact.text(_describe(exc)),
                exc_info=True,
            )
            transition = machine.advance(
                state, NodeOutcome(inputs=outcome.inputs, error=_describe(exc)), self.clock()
            )
        events = started + transition.events
        await self._commit(row, Transition(transition.state, events), held_until)

    async def _admit(self, state: ActionState, now: datetime) -> Transition | None:
        """Before the first step: the start guard's lease on the action's target, in a
        commit of its own so that it holds while the step runs (None: go ahead)."""
        if self.guard is None or not self.guard.guards(state.config):
            return None
        async with self.db.write() as connection:
            hold = await self.guard.admit(connection, state.id, state.config, now)
        if hold is None:
            return None
        if hold.until is not None:
            return machine.hold(state, now, hold.until, hold.message)
        return machine.refuse(state, now, ActionStatus(hold.status), hold.message)

    async def _mark_running(self, row: dict[str, Any], key: str) -> bool:
        """Record, before a step that is not idempotent runs, that it is about to: if heal
        dies during the run, the next wake finds the mark and does not run it again."""
        async with self.db.write() as connection:
            return await actions_repo.mark_running(connection, row["id"], row["version"], key)

    async def _expire_approval(
        self, row: dict[str, Any], state: ActionState, now: datetime
    ) -> Transition:
        """Skip the action; first run the approval ticket's ``on_expire`` node (revoke)."""
        expired = machine.expire_approval(state, now)
        ticket = state.config.approval_ticket
        if ticket is None or ticket.on_expire is None:
            return expired
        node = ticket.on_expire
        revoke = replace(state, current_node=node.function, poll=0, attempt=0)
        outcome = await self._run_node(revoke, self._context(row, revoke), now)
        if outcome.failed or outcome.error:
            note = TimelineEntry(
                EventKind.NODE_FAILED,
                f"{node.name} failed: {outcome.failed or outcome.error}",
                {"node": node.function, "inputs": outcome.inputs},
                action_id=state.id,
            )
        else:
            note = TimelineEntry(
                EventKind.NODE_FINISHED,
                f"{node.name} finished",
                {"node": node.function, "inputs": outcome.inputs, "outputs": outcome.outputs},
                action_id=state.id,
            )
        return Transition(expired.state, [note, *expired.events])

    async def _run_node(
        self, state: ActionState, context: dict[str, Any], now: datetime
    ) -> NodeOutcome:
        node = state.node
        kind = _plugin_kind(state)
        try:
            plugin = self.plugins[kind]
        except KeyError:
            return NodeOutcome(error=f"no plugin for action type {kind!r} is installed")
        except Exception as exc:  # its library is missing, its settings are wrong
            reason = self.redact.text(_describe(exc))
            log.error("plugin failed to start", type=kind, action_id=state.id, reason=reason)
            return NodeOutcome(error=f"the {kind} plugin failed to start: {reason}")
        auth = node.request.auth if isinstance(node, Node) else None
        if auth is not None and auth.type == "basic" and auth.username:
            self.redact.add_credential(auth.username, self.secrets.get(auth.secret, ""))
        remaining = (state.timeout_at - now).total_seconds() if state.timeout_at else 600.0
        call = self._call(state, context, min(node.call_timeout, remaining))
        began = time.perf_counter()
        label = "ok"
        try:
            result = await plugin.run_node(call)
            return NodeOutcome(
                inputs=self.redact(result.inputs), outputs=self.redact(result.outputs)
            )
        except NodeFailed as exc:
            label = "failed"
            return NodeOutcome(
                inputs=self.redact(exc.inputs),
                outputs=self.redact(exc.outputs),
                failed=self.redact.text(exc.message),
                permanent=exc.permanent,
            )
        except Exception as exc:
            label = "error"
            reason = self.redact.text(_describe(exc))
            log.error(
                "node raised",
                action_id=state.id,
                rule=context["action"]["rule"],
                action=state.name,
                node=node.function,
                reason=reason,
                exc_info=True,
            )
            return NodeOutcome(error=reason)
        finally:
            metrics.NODE_LATENCY.labels(
                plugin.type, label, context["action"]["rule"], state.name
            ).observe(time.perf_counter() - began)

    def _call(self, state: ActionState, context: dict[str, Any], timeout: float) -> NodeCall:
        node = state.node
        return NodeCall(
            action_id=state.id,
            node=node,
            context=context,
            secrets=self.secrets,
            idempotency_key=idempotency_key(state.id, node.function, state.attempt, state.poll),
            timeout=max(0.1, timeout),
            config=state.config,
            attempt=state.attempt,
            poll=state.poll,
        )

    async def _commit(self, row: dict[str, Any], transition: Transition, held_until: float) -> bool:
        """Commit the step; while the connection is lost, try again for ``commit_retry``
        seconds, but not past ``held_until`` (monotonic: when the runtime's hold of the wake
        ends), with the failed attempts on the timeline when it finally commits."""
        retry_until = min(held_until, time.monotonic() + self.commit_retry)
        failures: list[str] = []
        while True:
            try:
                return await self._commit_once(row, _with_retries_noted(transition, failures))
            except Exception as exc:
                delay = COMMIT_RETRY_DELAYS[min(len(failures), len(COMMIT_RETRY_DELAYS) - 1)]
                if not is_transient(exc) or time.monotonic() + delay > retry_until:
                    raise
                failures.append(self.redact.text(_describe(exc)))
                log.warning(
                    "commit failed; retrying",
                    action_id=row["id"],
                    rule=row["rule"],
                    action=row["action_name"],
                    attempt=len(failures),
                    retry_in=delay,
                    reason=failures[-1],
                )
                await asyncio.sleep(delay)

    async def _commit_once(self, row: dict[str, Any], transition: Transition) -> bool:
        state = transition.state
        now = self.clock()
        wake_at = state.next_wake_at
        async with self.db.write() as connection:
            applied = await actions_repo.update_if_version(
                connection, state.id, row["version"], _row_values(state, row)
            )
            if not applied:
                metrics.STALE_WAKES.inc()
                if transition.events:
                    await timeline_repo.append(
                        connection,
                        state.incident_id,
                        [
                            TimelineEntry(
                                EventKind.STALE_RESULT,
                                "a result arrived after the action had moved on; discarded",
                                {"node": row["current_node"]},
                                action_id=state.id,
                            )
                        ],
                        now,
                        self.redact,
                    )
                return False
            await timeline_repo.append(
                connection, state.incident_id, transition.events, now, self.redact
            )
            if self.hook is not None and state.status.value != row["status"]:
                await self.hook.on_transition(connection, row, state, now)
            if wake_at is not None:
                await self.scheduler.schedule(connection, state.id, row["version"] + 1, wake_at)
        if wake_at is not None:
            self.scheduler.committed(wake_at)
        if state.status != row["status"]:
            metrics.ACTION_STATUS.labels(state.status.value, row["rule"], row["action_name"]).inc()
            if state.status is ActionStatus.FAILURE:
                _log_failure(row, state)
        return True

    # -- external events -----------------------------------------------------------------
    async def cancel(self, action_id: int, who: str, reason: str = "") -> CancelResult:
        """Cancel an in-flight action: failure/user_abort. A finished one is left alone."""
        now = self.clock()
        async with self.db.write() as connection:
            row = await actions_repo.load(connection, action_id, for_update=True)
            if row is None:
                raise ActionNotFound(action_id)
            state = self._state(row)
            if state.status.is_terminal:
                return CancelResult(False, state.status)
            transition = machine.cancel(state, now, who, reason)
            await actions_repo.update_if_version(
                connection, action_id, row["version"], _row_values(transition.state, row)
            )
            await timeline_repo.append(
                connection, state.incident_id, transition.events, now, self.redact
            )
            if self.hook is not None:
                await self.hook.on_transition(connection, row, transition.state, now)
        metrics.ACTION_STATUS.labels(
            ActionStatus.FAILURE.value, row["rule"], row["action_name"]
        ).inc()
        log.warning(
            "action cancelled",
            action_id=action_id,
            incident_id=state.incident_id,
            rule=row["rule"],
            action=state.name,
            by=who,
            reason=self.redact.text(reason) or None,
        )
        await self._stop_remote_work(row, state)
        return CancelResult(True, ActionStatus.FAILURE)

    async def _stop_remote_work(self, row: dict[str, Any], state: ActionState) -> None:
        """After a cancel has committed: let the step's plugin stop what it started (an
        st2 execution). Best effort; what happened goes on the timeline."""
        if state.status is ActionStatus.WAITING and not state.config.in_approval_phase(
            state.current_node
        ):
            return  # waiting for people: nothing of the action ran yet
        try:
            plugin = self.plugins[_plugin_kind(state)]
            context = self._context(row, state)
            done = await plugin.cancel(self._call(state, context, state.node.call_timeout))
        except Exception as exc:
            done = f"stopping {state.node.name} failed: {self.redact.text(_describe(exc))}"
            log.error("cancel of remote work failed", action_id=state.id, reason=done)
        if done:
            async with self.db.write() as connection:
                entry = TimelineEntry(
                    EventKind.NODE_LOG, done, {"node": state.current_node}, action_id=state.id
                )
                await timeline_repo.append(
                    connection, state.incident_id, [entry], self.clock(), self.redact
                )

    # -- helpers -------------------------------------------------------------------------
    async def _load(self, action_id: int) -> dict[str, Any] | None:
        """The action's row, read without the snapshots this engine already holds."""
        known = action_id in self._known
        async with self.db.read() as connection:
            row = await actions_repo.load(connection, action_id, snapshots=not known)
        if row is not None and known:
            row = self._with_snapshots(row)
        if row is None and known:  # evicted between the two looks: read it whole
            async with self.db.read() as connection:
                row = await actions_repo.load(connection, action_id)
        return row

    def _with_snapshots(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """A claimed row completed with the action's snapshots, if they are known."""
        known = self._known.get(row["id"])
        if known is None:
            return None
        return {**row, "config": known.raw, "context": known.context}

    def _state(self, row: dict[str, Any]) -> ActionState:
        known = self._known.get(row["id"])
        if known is None:
            config, action = self._parse(row["config"]["action"])
            # The action's part is shared by every action of the same policy version; the
            # rest (rendered template_detail, settings) is this action's own and small.
            raw = {**row["config"], "action": action}
            known = _Snapshots(config, raw, row["context"])
            self._known[row["id"]] = known
            if len(self._known) > CONFIG_CACHE_SIZE:
                self._known.popitem(last=False)
        config = known.config
        return ActionState(
            id=row["id"],
            incident_id=row["incident_id"],
            name=row["action_name"],
            status=ActionStatus(row["status"]),
            version=row["version"],
            config=config,
            current_node=row["current_node"],
            attempt=row["attempt"],
            poll=row["poll"],
            framework_errors=row["framework_errors"],
            outputs=row["outputs"],
            pre_node_outputs=row["pre_node_outputs"],
            started_at=row["started_at"],
            timeout_at=row["timeout_at"],
            next_poll_at=row["next_poll_at"],
            approval_expires_at=row["approval_expires_at"],
            failure_type=FailureType(row["failure_type"]) if row["failure_type"] else None,
            message=row["message"],
            finished_at=row["finished_at"],
        )

    def _parse(self, snapshot: dict[str, Any]) -> tuple[ActionBase, dict[str, Any]]:
        """One parsed config, and one copy of its snapshot, per distinct snapshot: the
        actions a policy version starts share them (12 KiB each parsed, more as decoded
        JSON, so 10,000 in-flight actions would otherwise hold hundreds of MiB)."""
        key = json.dumps(snapshot, sort_keys=True, default=str)
        shared = self._snapshots.get(key)
        if shared is None:
            shared = (parse_action(snapshot), snapshot)
            self._snapshots[key] = shared
            if len(self._snapshots) > SNAPSHOT_CACHE_SIZE:
                self._snapshots.popitem(last=False)
        else:
            self._snapshots.move_to_end(key)
        return shared

    def _context(self, row: dict[str, Any], state: ActionState) -> dict[str, Any]:
        """What templates and JMESPath see. Secrets are not in it: plugins add them only
        where a request needs them, so they never reach a stored output or log line."""
        snapshot = row["config"]
        return {
            **state.outputs,
            "alert": row["context"].get("alert", {}),
            "incident": row["context"].get("incident", {}),
            "execute_config": snapshot.get("execute_config", {}),
            "params": snapshot.get("execute_config", {}).get("params", {}),
            "settings": snapshot.get("settings", {}),
            "action": {"id": state.id, "name": state.name, "rule": row["rule"]},
            "outputs": state.outputs,
            "pre_node_outputs": state.pre_node_outputs,
        }


@dataclass(frozen=True, slots=True)
class _Snapshots:
    """What never changes about an action after its creation, decoded once."""

    config: ActionBase
    raw: dict[str, Any]
    context: dict[str, Any]


def _row_values(state: ActionState, row: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": state.status.value,
        "failure_type": state.failure_type.value if state.failure_type else None,
        "message": state.message,
        "current_node": state.current_node,
        "attempt": state.attempt,
        "poll": state.poll,
        "framework_errors": state.framework_errors,
        "started_at": state.started_at,
        "timeout_at": state.timeout_at,
        "next_poll_at": state.next_poll_at,
        "approval_expires_at": state.approval_expires_at,
        "finished_at": state.finished_at,
        "next_wake_at": state.next_wake_at,
        "claimed_until": None,
        "running_key": None,
    }
    # JSON columns are rewritten only when they changed: most wakes are polls whose
    # outputs come back the same (a ticket still "RUNNING").
    if state.outputs != row["outputs"]:
        values["outputs"] = state.outputs
    if state.pre_node_outputs != row["pre_node_outputs"]:
        values["pre_node_outputs"] = state.pre_node_outputs
    if state.status.is_terminal:
        values["inflight_key"] = None
    return values


def _run_key(state: ActionState) -> str:
    return idempotency_key(state.id, state.current_node, state.attempt, state.poll)


def _with_retries_noted(transition: Transition, failures: list[str]) -> Transition:
    if not failures:
        return transition
    note = TimelineEntry(
        EventKind.COMMIT_RETRIED,
        f"the step's result was stored after {len(failures)} failed "
        f"attempt{'s' if len(failures) > 1 else ''}: {failures[-1]}",
        {"failures": failures},
        action_id=transition.state.id,
    )
    return Transition(transition.state, [*transition.events, note])


def _plugin_kind(state: ActionState) -> str:
    """An HTTP node (of an http action, or an approval ticket's on any type) is the http
    plugin's; every other step is its action type's."""
    return "http" if isinstance(state.node, Node) else state.config.type


def _log_failure(row: dict[str, Any], state: ActionState) -> None:
    log_action_failed(
        action_id=state.id,
        incident_id=state.incident_id,
        rule=row["rule"],
        action=state.name,
        failure_type=state.failure_type.value if state.failure_type else None,
        reason=state.message,
    )


def log_action_failed(
    *,
    action_id: int,
    incident_id: int,
    rule: str,
    action: str,
    failure_type: str | None,
    reason: str | None,
) -> None:
    """The one line an operator greps for when an action gave up (retries spent, timed
    out, a bug of ours, or it could not even be created); the reason was redacted when
    it was recorded."""
    log.error(
        "action failed",
        action_id=action_id,
        incident_id=incident_id,
        rule=rule,
        action=action,
        failure_type=failure_type,
        reason=reason,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
