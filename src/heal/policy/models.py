"""The policy file's shape. Names here are the YAML keys users write."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from heal.domain.actions import Signal
from heal.domain.approvals import OnResolve, TimeWindow
from heal.domain.matchers import LabelMatcher
from heal.policy.expressions import ValueFormat, check_expression, check_template

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _template_compiles(source: str) -> str:
    check_template(source)
    return source


def _matcher_parses(spec: str) -> str:
    LabelMatcher.parse("", spec)
    return spec


def _window_parses(window: str) -> str:
    TimeWindow.parse(window)
    return window


# Checked one by one, so that a problem is reported at its own key or item.
Template = Annotated[str, AfterValidator(_template_compiles)]
MatcherSpec = Annotated[str, AfterValidator(_matcher_parses)]
WindowSpec = Annotated[str, AfterValidator(_window_parses)]


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a policy must not silently do nothing.
    # Attribute docstrings are the JSON Schema's descriptions: editors show them as help.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ConditionMethod(StrEnum):
    EQUAL = "equal"
    NOT_EQUAL = "not equal"
    IN = "in"
    NOT_IN = "not in"
    EXISTS = "exists"


class Condition(_Strict):
    """``finished_rule`` / ``success_rule``: ``key`` is JMESPath over the node's outputs."""

    key: str
    """JMESPath over this node's outputs (by their keys), e.g. current_status."""
    method: ConditionMethod
    """How the value at key is compared: equal, not equal, in, not in (value is a list), exists
    (present and not null)."""
    value: Any = None
    """What the value at key is compared with (a list for in / not in; unused for exists)."""

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
    """The name this value gets: a request body/query field (inputs) or an output name later
    nodes and templates can use."""
    value: Any
    """The expression, template or literal to evaluate, as format says."""
    format: ValueFormat = ValueFormat.JMESPATH
    """jmespath (default): a JMESPath expression over the context; jinja2: a template (strings
    inside lists and dicts too); raw: the value as written."""
    type: Literal["int", "float", "string", "bool", "list", "dict"] | None = None
    """Convert the result to this type; a value that cannot be converted fails the node."""

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
    """bearer: an Authorization: Bearer header; basic: HTTP basic auth with username."""
    secret: str
    """The name of a secret declared under the policy's secrets (never the secret itself)."""
    username: str | None = None
    """The user name for basic auth (required for type basic)."""

    @model_validator(mode="after")
    def _basic_needs_user(self) -> Auth:
        if self.type == "basic" and not self.username:
            raise ValueError("basic auth needs a username")
        return self


class Request(_Strict):
    url: str
    """The URL to call, a template (e.g. "{{ settings.itsm_url }}/create_ticket/")."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    """The HTTP method; GET and DELETE send the inputs as the query string, the others as a
    JSON body."""
    headers: dict[str, Template] = Field(default_factory=dict)
    """Extra request headers; values are templates."""
    auth: Auth | None = None
    """Credentials for the request, from a declared secret."""
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    """Seconds to wait for this request's answer (0-300)."""

    @field_validator("url")
    @classmethod
    def _url_compiles(cls, url: str) -> str:
        check_template(url)
        return url


class Node(_Strict):
    function: str
    """The node's name, used by next_function and in logs: letters, digits, '_' or '-', unique
    within the action."""
    name: str
    """What the timeline shows for this node."""
    request: Request
    """The HTTP request this node makes."""
    inputs: list[ValueMapping] = Field(default_factory=list)
    """Values sent with the request, evaluated in order; each sees the ones before it."""
    outputs: list[ValueMapping] = Field(default_factory=list)
    """Values read from the response (as response), evaluated in order; later nodes see them by
    name."""
    finished_rule: Condition | None = None
    """When this holds the node is finished; otherwise it polls (need_schedule) or runs
    next_function. None: finished after one pass."""
    success_rule: Condition | None = None
    """Checked once finished; if it does not hold the node fails. None: success."""
    need_schedule: bool = False
    """Poll: run the node again every schedule_timedelta seconds until finished_rule holds."""
    schedule_timedelta: Annotated[float, Field(gt=0, le=86400)] = 5.0
    """Seconds between polls (0-86400)."""
    next_function: str | None = None
    """The function of the node to run next, in the same list; none: the action ends here."""
    need_insert_log: bool = False
    """Write log_template to the timeline when the node succeeds."""
    log_template: str | None = None
    """A template for the timeline line written when need_insert_log is true."""

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
    """Retry a failed node at all."""
    max_retry_times: Annotated[int, Field(ge=0, le=20)] = 0
    """How many times a failed node is run again (0-20)."""
    retry_interval: Annotated[float, Field(ge=0, le=3600)] = 5.0
    """Seconds between retries (0-3600)."""

    @property
    def budget(self) -> int:
        return self.max_retry_times if self.is_enabled else 0


Risk = Literal["low", "medium", "high", "critical"]


class ApprovalRequirement(_Strict):
    """What a human approval takes: how many signatures, from whom, for how long."""

    required_signatures: Annotated[int, Field(ge=1, le=10)] = 1
    """How many different people must approve (1-10)."""
    approver_groups: list[str] = Field(default_factory=list)
    """Signers must be in one of these groups; empty: any approver."""
    expires_in: Annotated[int, Field(ge=60, le=7 * 86400)] = 1800
    """Seconds until an unanswered approval expires and the action is skipped (60 s to 7 days)."""
    on_resolve: OnResolve = OnResolve.OBSOLETE
    """When the incident resolves (all its alerts resolved) while the approval is pending:
    'obsolete' ends the approval and skips the action (the remediation is no longer
    needed); 'keep' leaves it pending, so approving still runs the action."""


class AutoApprove(_Strict):
    """A condition under which an action runs without asking. Every field given must
    hold; the first condition that holds approves."""

    name: str
    """The condition's name, shown on the timeline when it approves."""
    max_risk: Risk | None = None
    """The action's risk is at most this."""
    labels: dict[str, MatcherSpec] = Field(default_factory=dict)
    """Label matchers the alert must match (as in a rule's match)."""
    windows: list[WindowSpec] = Field(default_factory=list)
    """Times of the week (UTC) the action may start, e.g. "Mon-Fri 09:00-18:00"."""
    min_success_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    """The rule's action succeeded at least this share (0-1) of its finished runs."""
    min_runs: Annotated[int, Field(ge=0)] = 0
    """The rule's action finished at least this many runs (for min_success_rate)."""


class ApprovalPolicy(_Strict):
    """``approval:`` at the top of the policy. Off unless ``enabled``."""

    enabled: bool = False
    """Actions ask for approval unless they say needs_approval: false."""
    require: ApprovalRequirement = Field(default_factory=ApprovalRequirement)
    """What an approval takes, unless an action says otherwise."""
    auto_approve: list[AutoApprove] = Field(default_factory=list)
    """Conditions under which an action runs without asking; the first that holds approves."""
    sweep_batch: Annotated[int, Field(ge=1, le=10_000)] = 200
    """The expiry sweeper works in batches of this many approvals."""


class ApprovalTicket(_Strict):
    """Ask for approval through an ITSM ticket, in the node language.

    ``nodes`` run while the action waits: when the last of them finishes, its
    ``success_rule`` decides (holds: approved, the action runs; does not: rejected, the
    action is skipped). ``on_expire`` runs once if the approval expires first (e.g. to
    revoke the ticket); its failure is recorded and does not change the outcome.
    """

    nodes: Annotated[list[Node], Field(min_length=1)]
    """Nodes that ask through an ITSM ticket; the last one's success_rule decides approved or
    rejected."""
    on_expire: Node | None = None
    """A node run once if the approval expires first (e.g. to revoke the ticket)."""


class ActionConfig(_Strict):
    type: Literal["http"]
    """The plugin that runs the nodes: http (one node is one HTTP request)."""
    description: str = ""
    """Free text about the action, shown to people asked to approve it."""
    risk: Risk = "medium"
    """How risky the action is: low, medium, high or critical (auto_approve's max_risk compares
    it)."""
    # None: as the policy's approval.enabled says; true/false: always/never ask.
    needs_approval: bool | None = None
    """true/false: always/never ask for approval; unset: as approval.enabled says."""
    approval: ApprovalRequirement | None = None
    """What an approval of this action takes, instead of approval.require."""
    approval_ticket: ApprovalTicket | None = None
    """Ask for approval through an ITSM ticket instead of (or besides) people in heal."""
    timeout: Annotated[int, Field(ge=60, le=7200)] = 600
    """Seconds from the first node's start until the action fails with timeout (60-7200)."""
    failed_retry: FailedRetry = Field(default_factory=FailedRetry)
    """Whether and how often a failed node is retried."""
    template_detail: dict[str, Template] = Field(default_factory=dict)
    """Templates rendered once when the action is created (alert, incident, settings); nodes
    read them as execute_config.template_detail."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Free-form values for the nodes: execute_config.params."""
    nodes: Annotated[list[Node], Field(min_length=1)]
    """The nodes of the action; the first one runs first."""

    @property
    def all_nodes(self) -> list[Node]:
        ticket = self.approval_ticket
        extra = [*ticket.nodes, *([ticket.on_expire] if ticket.on_expire else [])] if ticket else []
        return [*self.nodes, *extra]

    def in_approval_phase(self, function: str) -> bool:
        return self.approval_ticket is not None and any(
            node.function == function for node in self.approval_ticket.nodes
        )

    def node(self, function: str) -> Node:
        for node in self.all_nodes:
            if node.function == function:
                return node
        raise KeyError(function)


class ActionRef(_Strict):
    action: str
    """The name of an action defined under actions."""
    signal: list[Signal] = Field(default_factory=lambda: [Signal.FIRING], min_length=1)
    """On which signal the action starts: firing (a new alert occurrence) and/or resolved."""


class Rule(_Strict):
    name: str
    """The rule's name, unique in the policy."""
    match: dict[str, MatcherSpec] = Field(default_factory=dict)
    """Label matchers, Prometheus style: value or =value, !=, =~regex, !~regex (anchored)."""
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    """Alerts with the same values of these labels share one open incident."""
    skip_delay: Annotated[int, Field(ge=0)] = 0
    """Seconds: a firing alert that began longer ago does not start the rule's actions (0: off)."""
    actions: list[ActionRef] = Field(default_factory=list)
    """The actions to start, and on which signal."""
    continue_matching: bool = Field(default=False, alias="continue")
    """Let the next matching rule act on the alert too (as in Alertmanager)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )

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

    def matchers(self) -> list[LabelMatcher]:
        return [LabelMatcher.parse(name, str(spec)) for name, spec in self.match.items()]


class SecretRef(_Strict):
    """A secret's value comes from the environment, never from the policy file."""

    env: str
    """The environment variable that holds the secret's value."""


class Defaults(_Strict):
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    """Labels grouping the alerts that no rule matches into incidents."""


class Policy(_Strict):
    settings: dict[str, Any] = Field(default_factory=dict)
    """Plain values, visible to templates and expressions as settings.*."""
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    """Human approval of actions; off unless enabled."""
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    """Named secrets, read from the environment (never written here)."""
    defaults: Defaults = Field(default_factory=Defaults)
    """Defaults for alerts no rule matches."""
    actions: dict[str, ActionConfig] = Field(default_factory=dict)
    """What can be done, by name."""
    rules: list[Rule] = Field(default_factory=list)
    """When to do it: tried in order, the first that matches owns the alert."""
