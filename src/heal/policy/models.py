"""The policy file's shape. Names here are the YAML keys users write."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from heal.domain.actions import Signal
from heal.domain.approvals import OnResolve, TimeWindow
from heal.domain.matchers import LabelMatcher
from heal.policy.expressions import ValueFormat, check_expression, check_template

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a policy must not silently do nothing.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConditionMethod(StrEnum):
    EQUAL = "equal"
    NOT_EQUAL = "not equal"
    IN = "in"
    NOT_IN = "not in"
    EXISTS = "exists"


class Condition(_Strict):
    """``finished_rule`` / ``success_rule``: ``key`` is JMESPath over the node's outputs."""

    key: str
    method: ConditionMethod
    value: Any = None

    @field_validator("key")
    @classmethod
    def _key_compiles(cls, key: str) -> str:
        check_expression(key)
        return key

    @model_validator(mode="after")
    def _value_fits_method(self) -> Condition:
        if self.method in (ConditionMethod.IN, ConditionMethod.NOT_IN) and not isinstance(
            self.value, list
        ):
            raise ValueError(f"method {self.method.value!r} needs a list as value")
        return self


class ValueMapping(_Strict):
    """One input or output: ``key`` gets ``value`` evaluated as ``format``."""

    key: str
    value: Any
    format: ValueFormat = ValueFormat.JMESPATH
    type: Literal["int", "float", "string", "bool", "list", "dict"] | None = None

    @model_validator(mode="after")
    def _compiles(self) -> ValueMapping:
        if self.format is ValueFormat.JMESPATH:
            if not isinstance(self.value, str):
                raise ValueError("a jmespath value must be a string expression")
            check_expression(self.value)
        elif self.format is ValueFormat.JINJA2:
            _check_templates(self.value)
        return self


def _check_templates(value: Any) -> None:
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, list):
        for item in value:
            _check_templates(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_templates(item)


class Auth(_Strict):
    """A reference to a secret; the secret's value never appears in the policy."""

    type: Literal["bearer", "basic"]
    secret: str
    username: str | None = None

    @model_validator(mode="after")
    def _basic_needs_user(self) -> Auth:
        if self.type == "basic" and not self.username:
            raise ValueError("basic auth needs a username")
        return self


class Request(_Strict):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth | None = None
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0

    @field_validator("url")
    @classmethod
    def _url_compiles(cls, url: str) -> str:
        check_template(url)
        return url

    @field_validator("headers")
    @classmethod
    def _headers_compile(cls, headers: dict[str, str]) -> dict[str, str]:
        for value in headers.values():
            check_template(value)
        return headers


class Node(_Strict):
    function: str
    name: str
    request: Request
    inputs: list[ValueMapping] = Field(default_factory=list)
    outputs: list[ValueMapping] = Field(default_factory=list)
    finished_rule: Condition | None = None
    success_rule: Condition | None = None
    need_schedule: bool = False
    schedule_timedelta: Annotated[float, Field(gt=0, le=86400)] = 5.0
    next_function: str | None = None
    need_insert_log: bool = False
    log_template: str | None = None

    @field_validator("function")
    @classmethod
    def _function_is_identifier(cls, function: str) -> str:
        if not _IDENTIFIER.match(function):
            raise ValueError("function must be a name of letters, digits, '_' or '-'")
        return function

    @field_validator("log_template")
    @classmethod
    def _log_compiles(cls, template: str | None) -> str | None:
        if template is not None:
            check_template(template)
        return template

    @model_validator(mode="after")
    def _can_make_progress(self) -> Node:
        if self.need_insert_log and not self.log_template:
            raise ValueError("need_insert_log is true but log_template is empty")
        if self.need_schedule and self.finished_rule is None:
            raise ValueError("need_schedule polls until finished_rule holds: add a finished_rule")
        if self.finished_rule is not None and not (self.need_schedule or self.next_function):
            raise ValueError(
                "a node with finished_rule must either poll (need_schedule) or name a "
                "next_function to run while unfinished"
            )
        return self


class FailedRetry(_Strict):
    is_enabled: bool = False
    max_retry_times: Annotated[int, Field(ge=0, le=20)] = 0
    retry_interval: Annotated[float, Field(ge=0, le=3600)] = 5.0

    @property
    def budget(self) -> int:
        return self.max_retry_times if self.is_enabled else 0


Risk = Literal["low", "medium", "high", "critical"]


class ApprovalRequirement(_Strict):
    """What a human approval takes: how many signatures, from whom, for how long."""

    required_signatures: Annotated[int, Field(ge=1, le=10)] = 1
    approver_groups: list[str] = Field(default_factory=list)
    expires_in: Annotated[int, Field(ge=60, le=7 * 86400)] = 1800
    on_resolve: OnResolve = Field(
        default=OnResolve.OBSOLETE,
        description="When the incident resolves (all its alerts resolved) while the "
        "approval is pending: 'obsolete' ends the approval and skips the action (the "
        "remediation is no longer needed); 'keep' leaves it pending, so approving still "
        "runs the action.",
    )


class AutoApprove(_Strict):
    """A condition under which an action runs without asking. Every field given must
    hold; the first condition that holds approves."""

    name: str
    max_risk: Risk | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    windows: list[str] = Field(default_factory=list)
    min_success_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    min_runs: Annotated[int, Field(ge=0)] = 0

    @field_validator("labels")
    @classmethod
    def _matchers_parse(cls, labels: dict[str, str]) -> dict[str, str]:
        for name, spec in labels.items():
            LabelMatcher.parse(name, str(spec))
        return labels

    @field_validator("windows")
    @classmethod
    def _windows_parse(cls, windows: list[str]) -> list[str]:
        for window in windows:
            TimeWindow.parse(window)
        return windows


class ApprovalPolicy(_Strict):
    """``approval:`` at the top of the policy. Off unless ``enabled``."""

    enabled: bool = False
    require: ApprovalRequirement = Field(default_factory=ApprovalRequirement)
    auto_approve: list[AutoApprove] = Field(default_factory=list)
    sweep_batch: Annotated[int, Field(ge=1, le=10_000)] = 200


class ApprovalTicket(_Strict):
    """Ask for approval through an ITSM ticket, in the node language.

    ``nodes`` run while the action waits: when the last of them finishes, its
    ``success_rule`` decides (holds: approved, the action runs; does not: rejected, the
    action is skipped). ``on_expire`` runs once if the approval expires first (e.g. to
    revoke the ticket); its failure is recorded and does not change the outcome.
    """

    nodes: Annotated[list[Node], Field(min_length=1)]
    on_expire: Node | None = None


class ActionConfig(_Strict):
    type: Literal["http"]
    description: str = ""
    risk: Risk = "medium"
    # None: as the policy's approval.enabled says; true/false: always/never ask.
    needs_approval: bool | None = None
    approval: ApprovalRequirement | None = None
    approval_ticket: ApprovalTicket | None = None
    timeout: Annotated[int, Field(ge=60, le=7200)] = 600
    failed_retry: FailedRetry = Field(default_factory=FailedRetry)
    template_detail: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    nodes: Annotated[list[Node], Field(min_length=1)]

    @field_validator("template_detail")
    @classmethod
    def _detail_compiles(cls, detail: dict[str, str]) -> dict[str, str]:
        for value in detail.values():
            check_template(value)
        return detail

    @property
    def all_nodes(self) -> list[Node]:
        ticket = self.approval_ticket
        extra = [*ticket.nodes, *([ticket.on_expire] if ticket.on_expire else [])] if ticket else []
        return [*self.nodes, *extra]

    def in_approval_phase(self, function: str) -> bool:
        return self.approval_ticket is not None and any(
            node.function == function for node in self.approval_ticket.nodes
        )

    @model_validator(mode="after")
    def _graph_is_closed(self) -> ActionConfig:
        functions = [node.function for node in self.all_nodes]
        duplicates = {f for f in functions if functions.count(f) > 1}
        if duplicates:
            raise ValueError(f"node functions must be unique, repeated: {sorted(duplicates)}")
        phases = [[n.function for n in self.nodes]]
        if self.approval_ticket:
            phases.append([n.function for n in self.approval_ticket.nodes])
        for phase in phases:
            for node in self.all_nodes:
                if (
                    node.function in phase
                    and node.next_function is not None
                    and node.next_function not in phase
                ):
                    raise ValueError(
                        f"node {node.function!r}: next_function {node.next_function!r} names "
                        f"no node of the same list (known: {phase})"
                    )
        return self

    def node(self, function: str) -> Node:
        for node in self.all_nodes:
            if node.function == function:
                return node
        raise KeyError(function)


class ActionRef(_Strict):
    action: str
    signal: list[Signal] = Field(default_factory=lambda: [Signal.FIRING], min_length=1)


class Rule(_Strict):
    name: str
    match: dict[str, str] = Field(default_factory=dict)
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    skip_delay: Annotated[int, Field(ge=0)] = 0
    actions: list[ActionRef] = Field(default_factory=list)
    continue_matching: bool = Field(default=False, alias="continue")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("match", mode="before")
    @classmethod
    def _scalars_are_strings(cls, match: Any) -> Any:
        # `code: 500` in YAML is an int; label values are always strings.
        if isinstance(match, dict):
            return {
                k: str(v).lower()
                if isinstance(v, bool)
                else (str(v) if isinstance(v, int | float) else v)
                for k, v in match.items()
            }
        return match

    @field_validator("match")
    @classmethod
    def _matchers_parse(cls, match: dict[str, str]) -> dict[str, str]:
        for name, spec in match.items():
            LabelMatcher.parse(name, str(spec))
        return match

    def matchers(self) -> list[LabelMatcher]:
        return [LabelMatcher.parse(name, str(spec)) for name, spec in self.match.items()]


class SecretRef(_Strict):
    """A secret's value comes from the environment, never from the policy file."""

    env: str


class Defaults(_Strict):
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])


class Policy(_Strict):
    settings: dict[str, Any] = Field(default_factory=dict)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    actions: dict[str, ActionConfig] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    def reference_errors(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references pydantic cannot see, each with the location it concerns."""
        errors: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                errors.append((("rules", index, "name"), f"rule name {rule.name!r} is repeated"))
            seen.add(rule.name)
            for ref_index, ref in enumerate(rule.actions):
                if ref.action not in self.actions:
                    errors.append(
                        (
                            ("rules", index, "actions", ref_index, "action"),
                            f"action {ref.action!r} is not defined "
                            f"(defined: {sorted(self.actions)})",
                        )
                    )
        for name, action in self.actions.items():
            for node_index, node in enumerate(action.nodes):
                auth = node.request.auth
                if auth and auth.secret not in self.secrets:
                    errors.append(
                        (
                            ("actions", name, "nodes", node_index, "request", "auth", "secret"),
                            f"secret {auth.secret!r} is not declared under secrets",
                        )
                    )
        return errors
