"""The built-in executor types' keys, and the steps each compiles into.

Each type's config is a policy model (the binding YAML keys); its ``steps`` are what the
engine persists and runs one by one through the type's plugin (``heal.plugins``), which
dispatches on the step's ``function``. A step that polls is an ordinary polled node of
the machine: a crash mid-wait resumes waiting, it never runs the earlier steps again.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from heal.policy.base import StrictModel, Template
from heal.policy.models import (
    ActionBase,
    Condition,
    ConditionMethod,
    ExecutorStep,
    Step,
    check_nested_templates,
)

_ST2_REF = re.compile(r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_.\-]+$")
# A command's own time, plus what it takes to connect, collect its output and report.
_COMMAND_MARGIN = 30.0

_DONE = Condition(key="done", method=ConditionMethod.EQUAL, value=True)


def _polled(function: str, name: str, interval: float, backoff_to: float | None) -> ExecutorStep:
    """A step run again every ``interval`` s until its outputs say ``done: true``; the
    plugin raises ``NodeFailed`` for an unsuccessful end, with the reason."""
    return ExecutorStep(
        function=function,
        name=name,
        need_schedule=True,
        schedule_timedelta=interval,
        schedule_backoff_to=backoff_to,
        finished_rule=_DONE,
    )


# -- kubernetes ----------------------------------------------------------------------------
class KubernetesTarget(StrictModel):
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    """The workload's kind: Deployment, StatefulSet or DaemonSet."""
    namespace: Template
    """The workload's namespace, a template; must be in kubernetes.allowed_namespaces."""
    name: Template
    """The workload's name, a template."""


class Bounds(StrictModel):
    min: Annotated[int, Field(ge=0)] = 0
    """The fewest replicas a scale may set."""
    max: Annotated[int, Field(ge=0)]
    """The most replicas a scale may set."""

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError(f"bounds are inverted: min {self.min} is above max {self.max}")
        return self


class RolloutWait(StrictModel):
    timeout: Annotated[int, Field(ge=1, le=3600)] = 300
    """Seconds the rollout may take before the action fails (1-3600)."""
    interval: Annotated[float, Field(ge=0.5, le=60)] = 2.0
    """Seconds between looks at the rollout's progress (0.5-60)."""


class KubernetesAction(ActionBase):
    """Restart, scale or roll back a workload: dry-run, apply, then wait for the rollout."""

    type: Literal["kubernetes"]
    """kubernetes: an operation on a workload, through the Kubernetes API."""
    operation: Literal["restart", "scale", "rollback"]
    """restart (as kubectl rollout restart), scale (the scale subresource) or rollback (as
    kubectl rollout undo)."""
    cluster: str = "default"
    """The cluster, by its name under kubernetes.clusters."""
    target: KubernetesTarget
    """The workload to act on."""
    replicas: int | Template | None = None
    """scale: the replica count, a number or a template (outputs.current_replicas is the count
    before); always held within bounds."""
    bounds: Bounds | None = None
    """scale: the replica counts allowed; a rendered count outside them fails the action."""
    to_revision: Annotated[int, Field(ge=1)] | None = None
    """rollback: the revision to go back to; unset: the one before the current."""
    wait: RolloutWait | None = Field(default_factory=RolloutWait)
    """Wait for the rollout to complete (as kubectl rollout status); null: do not wait."""

    @model_validator(mode="after")
    def _keys_fit_operation(self) -> KubernetesAction:
        if self.operation == "scale":
            if self.replicas is None:
                raise ValueError("operation scale needs replicas")
            if self.bounds is None:
                raise ValueError("operation scale needs bounds: {min: N, max: M}")
        elif self.replicas is not None or self.bounds is not None:
            raise ValueError(f"replicas and bounds are for operation scale, not {self.operation}")
        if self.to_revision is not None and self.operation != "rollback":
            raise ValueError(f"to_revision is for operation rollback, not {self.operation}")
        if self.operation == "scale" and self.target.kind == "DaemonSet":
            raise ValueError("a DaemonSet has no replicas to scale")
        if self.wait is not None and self.wait.timeout >= self.timeout:
            # The action's own timeout would end the wait first, with a vaguer message.
            raise ValueError(
                f"wait.timeout ({self.wait.timeout} s) must be shorter than the action's "
                f"timeout ({self.timeout} s): raise timeout too"
            )
        return self

    @field_validator("replicas")
    @classmethod
    def _replicas_template(cls, replicas: int | str | None) -> int | str | None:
        if isinstance(replicas, int) and replicas < 0:
            raise ValueError("replicas cannot be negative")
        return replicas

    @cached_property
    def steps(self) -> list[Step]:
        steps: list[Step] = [
            ExecutorStep(
                function="dry_run", name=f"{self.operation} (dry run)", next_function="apply"
            ),
            ExecutorStep(
                function="apply",
                name=self.operation,
                next_function="wait" if self.wait else None,
                # What was done, in words: "rolled back to revision 2", or why nothing was.
                need_insert_log=True,
                log_template="{{ result }}",
            ),
        ]
        if self.wait is not None:
            steps.append(_polled("wait", "rollout", self.wait.interval, None))
        return steps


# -- stackstorm ----------------------------------------------------------------------------
class StackStormAuth(StrictModel):
    type: Literal["api_key", "auth_token"]
    """api_key: the St2-Api-Key header; auth_token: the X-Auth-Token header."""
    secret: str
    """The name of a declared secret holding the key or token."""


class StackStormAction(ActionBase):
    """Run a StackStorm action chosen by keyword, and follow its execution to the end."""

    type: Literal["stackstorm"]
    """stackstorm: a StackStorm execution (POST /executions, then polled)."""
    base_url: Template
    """The st2 API, e.g. https://st2.example.com/api/v1 (a template)."""
    auth: StackStormAuth
    """How heal authenticates to st2."""
    verify_ssl: bool = True
    """Check the st2 server's TLS certificate."""
    request_timeout: Annotated[float, Field(gt=0, le=300)] = 15.0
    """Seconds to wait for each st2 API answer (0-300)."""
    match_on: Template = ""
    """The text matched against action_map's keys (a template, e.g. the alert's description)."""
    action_map: dict[str, str] = Field(default_factory=dict)
    """Keyword -> st2 action ref (pack.action): the first keyword found in match_on (ignoring
    case, in file order) picks the action."""
    default_action: str | None = None
    """The st2 action ref run when no keyword matches; unset: the action fails saying so."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """The st2 action's parameters; strings are templates."""
    poll_interval: Annotated[float, Field(ge=0.5, le=60)] = 2.0
    """Seconds before the first look at the execution; later looks back off to 15 s."""

    @field_validator("action_map")
    @classmethod
    def _refs(cls, action_map: dict[str, str]) -> dict[str, str]:
        for ref in action_map.values():
            _check_ref(ref)
        return action_map

    @field_validator("default_action")
    @classmethod
    def _default_ref(cls, ref: str | None) -> str | None:
        return None if ref is None else _check_ref(ref)

    @field_validator("parameters")
    @classmethod
    def _parameters_compile(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        check_nested_templates(parameters)
        return parameters

    @model_validator(mode="after")
    def _something_to_run(self) -> StackStormAction:
        if not self.action_map and self.default_action is None:
            raise ValueError("a stackstorm action needs an action_map or a default_action")
        return self

    secret_paths = (("auth", "secret"),)

    @cached_property
    def steps(self) -> list[Step]:
        return [
            ExecutorStep(
                function="execute",
                name="st2 execution",
                next_function="follow",
                timeout=self.request_timeout * 3,
            ),
            _polled("follow", "st2 execution result", self.poll_interval, 15.0),
        ]


def _check_ref(ref: str) -> str:
    if not _ST2_REF.match(ref):
        raise ValueError(f"{ref!r} is not a StackStorm action ref (pack.action)")
    return ref


# -- commands (ssh, local) -----------------------------------------------------------------
def _argv(command: Any) -> Any:
    if isinstance(command, str):
        raise ValueError(
            "command must be a list of arguments (argv), never a shell string: "
            f"write [{', '.join(repr(p) for p in command.split()[:3])}, ...]"
        )
    return command


Argv = Annotated[list[Template], Field(min_length=1)]


class _CommandAction(ActionBase):
    command: Argv
    """The program and its arguments, one list item each (argv, never a shell string);
    each item is a template and stays one argument whatever it renders to."""
    timeout: Annotated[int, Field(ge=1, le=7200)] = 60
    """Seconds the command may run before it is killed (1-7200): its process group gets
    TERM, then KILL after 5 s (docs/executors.md)."""
    success_exit_codes: Annotated[list[int], Field(min_length=1)] = Field(
        default_factory=lambda: [0]
    )
    """Exit codes that mean success."""
    idempotent: bool = False
    """true: safe to run again if heal stopped while it ran; false (default): the action then
    fails saying the outcome is unknown, and the command is not run again."""

    @field_validator("command", mode="before")
    @classmethod
    def _not_a_shell_string(cls, command: Any) -> Any:
        return _argv(command)

    @property
    def deadline_seconds(self) -> float:
        runs = 1 + self.failed_retry.budget
        waits = self.failed_retry.budget * self.failed_retry.retry_interval
        return runs * (self.timeout + _COMMAND_MARGIN) + waits

    @cached_property
    def steps(self) -> list[Step]:
        return [
            ExecutorStep(
                function="run",
                name=f"{self.type} command",
                idempotent=self.idempotent,
                timeout=self.timeout + _COMMAND_MARGIN,
            )
        ]


class SshAction(_CommandAction):
    """Run a command on a host over SSH: known hosts only, a key from a secret."""

    type: Literal["ssh"]
    """ssh: a command on a remote host (OpenSSH, key authentication)."""
    host: Template
    """The host to connect to, a template (e.g. the alert's instance label); a rendered
    host with a port in it (10.0.0.1:9100) is refused: the port goes under port."""
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    """The SSH port."""
    username: Template
    """The user to log in as."""
    key: str
    """The name of a declared secret holding the private key (OpenSSH format)."""

    secret_paths = (("key",),)


class LocalAction(_CommandAction):
    """Run a program on heal's own host: no shell, a clean environment."""

    type: Literal["local"]
    """local: a program run by heal itself, without a shell."""
    env: dict[str, Template] = Field(default_factory=dict)
    """The whole environment the program gets, values are templates; PATH is
    /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin unless set here."""
    cwd: str | None = None
    """The working directory; unset: heal's own."""
