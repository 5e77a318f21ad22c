"""Building a new action instance: the snapshot of its config and context."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from heal.domain.actions import ActionStatus, FailureType, Signal
from heal.policy.expressions import ExpressionError, render
from heal.policy.models import ActionBase, Verify
from heal.policy.params import ParamsRejected, validate_params
from heal.policy.plugins import parse_action


def step_functions(snapshot: dict[str, Any]) -> list[str]:
    """The functions of an action's steps, in order, from its stored config snapshot."""
    nodes = snapshot.get("nodes")
    if isinstance(nodes, list):  # the node language: as written
        return [node["function"] for node in nodes]
    return [step.function for step in parse_action(snapshot).steps]


def inflight_key(incident_id: int, rule: str, action: str) -> str:
    return f"{incident_id}:{rule}:{action}"


def execute_config(config: ActionBase, context: dict[str, Any]) -> dict[str, Any]:
    """The action's config as its nodes see it, ``template_detail`` rendered.

    Both shapes of the rendered detail are offered, as in the FTA model: a list of
    ``{key, value}`` for APIs that take fields, and a dict for templates.
    """
    detail = {key: render(value, context) for key, value in config.template_detail.items()}
    return {
        "timeout": config.timeout,
        "params": context.get("params", {}),
        "template_detail": [{"key": k, "value": v} for k, v in detail.items()],
        "template_detail_dict": detail,
    }


def new_action_row(
    *,
    incident_id: int,
    alert_id: int | None,
    rule: str,
    action_name: str,
    config: ActionBase,
    signal: Signal,
    alert: dict[str, Any],
    incident: dict[str, Any],
    settings: dict[str, Any],
    now: datetime,
    params: Mapping[str, Any] | None = None,
    policy: Any = None,
) -> dict[str, Any]:
    """A new action's row, not inserted. ``params``: the values proposed for the action's
    declared params (a decision's, or a rule's rendered ``params``), checked against
    them here with ``policy`` (for ``enum_from``); values that do not validate make the
    action a failed creation, never a step that runs with them."""
    context: dict[str, Any] = {"alert": alert, "incident": incident, "settings": settings}
    row: dict[str, Any] = {
        "incident_id": incident_id,
        "alert_id": alert_id,
        "rule": rule,
        "action_name": action_name,
        "plugin": config.type,
        "signal": signal.value,
        "context": {"alert": alert, "incident": incident},
        "status": ActionStatus.RECEIVED.value,
        # Every row of a batch must carry the same keys: a multi-row INSERT takes its
        # columns from the first row.
        "failure_type": None,
        "message": None,
        "finished_at": None,
        "approval_expires_at": None,
        "version": 0,
        "current_node": config.steps[0].function,
        "attempt": 0,
        "poll": 0,
        "framework_errors": 0,
        "outputs": {},
        "pre_node_outputs": {},
        "created_at": now,
        "next_poll_at": now,
        "next_wake_at": now,
        "inflight_key": inflight_key(incident_id, rule, action_name),
        "target": None,
    }
    what = "params"
    try:
        context["params"] = validate_params(config.params, params or {}, policy)
        what = "template_detail"
        rendered = execute_config(config, context)
        what = "target_key"
        if config.target_key is not None:
            row["target"] = _target(config.target_key, context)
    except (ExpressionError, ParamsRejected) as exc:
        # Keep the action visible as a failed creation rather than dropping it.
        rendered = {}
        failed = "did not validate" if isinstance(exc, ParamsRejected) else "failed to render"
        row.update(
            status=ActionStatus.FAILURE.value,
            failure_type=FailureType.CREATE_FAILURE.value,
            message=f"{what} {failed}: {exc}",
            finished_at=now,
            next_poll_at=None,
            next_wake_at=None,
            inflight_key=None,
        )
    row["config"] = {
        "action": config.model_dump(mode="json", by_alias=True),
        "execute_config": rendered,
        "settings": settings,
    }
    return row


# The stored target's bound (actions.target): a longer rendering is an error, not a cut, so
# two targets never share a lease by accident.
TARGET_MAX = 500


def _target(template: str, context: dict[str, Any]) -> str:
    """The rendered target_key; empty or too long is refused: it would lease nothing, or
    the wrong thing."""
    target = str(render(template, context)).strip()
    if not target:
        raise ExpressionError("target_key rendered empty")
    if len(target) > TARGET_MAX:
        raise ExpressionError(
            f"target_key rendered {len(target)} characters (at most {TARGET_MAX})"
        )
    return target


def snapshot_verify(row: dict[str, Any], verify: Verify | None) -> None:
    """Keep the verification the action gets (its rule's and its own keys) with its
    snapshot: a later policy reload does not change how a running action is judged."""
    if verify is not None:
        row["config"] = {**row["config"], "verify": verify.model_dump(mode="json")}


def incident_context(incident: dict[str, Any]) -> dict[str, Any]:
    """What an action's templates see as ``incident``, taken from its row."""
    opened = incident.get("opened_at")
    return {
        "id": incident["id"],
        "title": incident.get("title"),
        "severity": incident.get("severity"),
        "group_labels": incident.get("group_labels", {}),
        "rule": incident.get("rule"),
        "opened_at": opened.isoformat() if isinstance(opened, datetime) else opened,
    }


def block(row: dict[str, Any], reason: str, now: datetime) -> None:
    """A new action a governor refuses (an open breaker, a limit with ``over: block``, a
    freeze): it ends blocked, never run."""
    row.update(
        status=ActionStatus.BLOCKED.value,
        failure_type=FailureType.BLOCKED.value,
        finished_at=now,
        next_poll_at=None,
        next_wake_at=None,
        inflight_key=None,
        message=f"blocked: {reason}",
    )
    row["_gate_note"] = f"action not run: {row['message']}"
