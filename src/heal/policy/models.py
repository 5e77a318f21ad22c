"""The policy file's shape. Names here are the YAML keys users write."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from heal.domain.actions import Signal
from heal.domain.approvals import OnResolve
from heal.domain.matchers import LabelMatcher
from heal.domain.notifications import CHAT_CHANNELS, Event
from heal.domain.verification import OnIneffective
from heal.policy.base import MatcherSpec, StrictModel, Template, WeekWindowSpec, WindowSpec
from heal.policy.decide import DecideSettings, RuleDecide
from heal.policy.expressions import ValueFormat, check_expression, check_template
from heal.policy.params import ParamSpec, as_declared

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class ConditionMethod(StrEnum):
    EQUAL = "equal"
    NOT_EQUAL = "not equal"
    IN = "in"
    NOT_IN = "not in"
    EXISTS = "exists"


class Condition(StrictModel):
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


class ValueMapping(StrictModel):
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
            check_nested_templates(self.value)
        return self


def check_nested_templates(value: Any) -> None:
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, list):
        for item in value:
            check_nested_templates(item)
    elif isinstance(value, dict):
        for item in value.values():
            check_nested_templates(item)


class Auth(StrictModel):
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


class Request(StrictModel):
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


class Step(StrictModel):
    """One step of an action as the engine runs it: a node of the node language, or a
    step an executor type compiles its config into (``steps`` of its action)."""

    function: str
    """The node's name, used by next_function and in logs: letters, digits, '_' or '-', unique
    within the action."""
    name: str
    """What the timeline shows for this node."""
    finished_rule: Condition | None = None
    """When this holds the node is finished; otherwise it polls (need_schedule) or runs
    next_function. None: finished after one pass."""
    success_rule: Condition | None = None
    """Checked once finished; if it does not hold the node fails. None: success."""
    need_schedule: bool = False
    """Poll: run the node again every schedule_timedelta seconds until finished_rule holds."""
    schedule_timedelta: Annotated[float, Field(gt=0, le=86400)] = 5.0
    """Seconds between polls (0-86400)."""
    schedule_backoff_to: Annotated[float, Field(gt=0, le=86400)] | None = None
    """With need_schedule: the seconds between polls double after each poll, from
    schedule_timedelta up to this many; unset: every poll is schedule_timedelta apart."""
    next_function: str | None = None
    """The function of the node to run next, in the same list; none: the action ends here."""
    need_insert_log: bool = False
    """Write log_template to the timeline when the node succeeds."""
    log_template: str | None = None
    """A template for the timeline line written when need_insert_log is true."""
    idempotent: bool = True
    """Whether running this node again is safe when heal stopped while it ran (its outcome
    is then unknown). true: it runs again, with the same Idempotency-Key; false: the action
    fails saying the outcome is unknown, and the node is not run again."""

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
    def _can_make_progress(self) -> Step:
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

    @property
    def call_timeout(self) -> float:
        """Seconds one run of the step may take."""
        return 30.0

    def poll_delay(self, poll: int) -> float:
        """Seconds until poll number ``poll + 1`` (``poll`` polls so far, from 0)."""
        if self.schedule_backoff_to is None:
            return self.schedule_timedelta
        return min(self.schedule_backoff_to, self.schedule_timedelta * float(2 ** min(poll, 32)))


class ExecutorStep(Step):
    """A step an executor type compiles its config into; the plugin runs it by function."""

    timeout: Annotated[float, Field(gt=0, le=7200)] = 30.0
    """Seconds one run of the step may take."""

    @property
    def call_timeout(self) -> float:
        return self.timeout


class Node(Step):
    """A node of the node language: one HTTP request, its inputs and outputs."""

    request: Request
    """The HTTP request this node makes."""
    inputs: list[ValueMapping] = Field(default_factory=list)
    """Values sent with the request, evaluated in order; each sees the ones before it."""
    outputs: list[ValueMapping] = Field(default_factory=list)
    """Values read from the response (as response), evaluated in order; later nodes see them by
    name."""

    @property
    def call_timeout(self) -> float:
        return self.request.timeout


class FailedRetry(StrictModel):
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


class ApprovalRequirement(StrictModel):
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


class AutoApprove(StrictModel):
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
    tiers: list[Literal["playbook", "llm", "expert"]] = Field(default_factory=list)
    """Only actions a decision chose, by one of these tiers; empty: any action."""
    min_confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    """Only a decision's action whose proposal has at least this confidence (the LLM's
    own; 0 for playbooks and expert rules)."""
    min_lower_bound: Annotated[float, Field(ge=0, le=1)] | None = None
    """Only a decision's action proposed by a playbook whose verified success rate has at
    least this Wilson lower bound (0-1)."""


class ApprovalPolicy(StrictModel):
    """``approval:`` at the top of the policy. Off unless ``enabled``."""

    enabled: bool = False
    """Actions ask for approval unless they say needs_approval: false."""
    require: ApprovalRequirement = Field(default_factory=ApprovalRequirement)
    """What an approval takes, unless an action says otherwise."""
    auto_approve: list[AutoApprove] = Field(default_factory=list)
    """Conditions under which an action runs without asking; the first that holds approves."""
    sweep_batch: Annotated[int, Field(ge=1, le=10_000)] = 200
    """The expiry sweeper works in batches of this many approvals."""


class ApprovalTicket(StrictModel):
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


class Verify(StrictModel):
    """``verify:`` on a rule or an action: after the action ends success, heal watches its
    incident and records whether the fix worked (the action's outcome: verified,
    ineffective or relapsed). An action's keys override its rule's, key by key."""

    within: Annotated[int, Field(ge=30, le=86400)] = 300
    """Seconds after the action's success by which every alert of the incident must have
    resolved (30 s to 1 day); still firing then: ineffective."""
    quiet_for: Annotated[int, Field(ge=0, le=7 * 86400)] = 600
    """Seconds after the resolution during which the alerts must not fire again (0 to 7
    days); a new firing of the same alert, or a new incident of the same group: relapsed."""
    on_ineffective: OnIneffective = OnIneffective.NONE
    """What to do when the fix did not work (ineffective or relapsed): 'escalate' tells the
    incident's chat thread with the evidence and asks approval for the rule's next action;
    'rollback' runs the action's rollback; 'none' only records the outcome."""


def effective_verify(rule: Verify | None, action: Verify | None) -> Verify | None:
    """The verification an action of a rule gets: the action's keys over the rule's."""
    if rule is None and action is None:
        return None
    merged: dict[str, Any] = {}
    for part in (rule, action):
        if part is not None:
            merged.update(part.model_dump(exclude_unset=True))
    return Verify.model_validate(merged)


class Concurrency(StrictModel):
    """``concurrency:`` on an action: how many remediations of one target may run at once."""

    max: Annotated[int, Field(ge=1, le=100)] = 1
    """How many actions may work on one target at the same time (1-100), across incidents and
    workers."""
    policy: Literal["delay", "cancel"] = "delay"
    """When the target is busy: delay (the action waits, durably, until the target is free)
    or cancel (the action ends skipped, with the reason on the timeline)."""
    recheck: Annotated[int, Field(ge=1, le=3600)] = 30
    """Seconds between two looks at a busy target while an action is delayed (1-3600); the
    end of the action holding it also wakes the next one at once."""
    max_wait: Annotated[int, Field(ge=1, le=7 * 86400)] = 1800
    """Seconds a delayed action waits for its busy target at most (1 s to 7 days), counted
    from its first delay: past it, the action ends blocked, with the reason on the
    timeline."""


class RateLimit(StrictModel):
    """One item of ``limits:``: at most ``max`` actions of this action on one target per
    ``per`` seconds."""

    max: Annotated[int, Field(ge=1, le=100_000)]
    """How many actions of this action on one target may start within the window."""
    per: Annotated[int, Field(ge=1, le=30 * 86400)]
    """The window, in seconds (1 s to 30 days)."""
    over: Literal["approve", "block"] = "approve"
    """Past the limit: approve (the action waits for a human approval) or block (it ends
    blocked)."""


class Breaker(StrictModel):
    """``breaker:`` on an action: after ``failures`` failures (or ineffective outcomes) of
    this action on one target within ``within`` seconds, further actions there are blocked
    for ``cooldown`` seconds, or until an operator resets the breaker."""

    failures: Annotated[int, Field(ge=1, le=1000)] = 3
    """How many failures or ineffective outcomes open the breaker (1-1000)."""
    within: Annotated[int, Field(ge=1, le=30 * 86400)] = 3600
    """The window, in seconds, in which the failures are counted (1 s to 30 days)."""
    cooldown: Annotated[int, Field(ge=1, le=30 * 86400)] = 1800
    """Seconds an open breaker blocks the action on its target (1 s to 30 days)."""


class Budget(StrictModel):
    """``governors.budget``: at most ``max`` automated actions in all per ``per`` seconds."""

    max: Annotated[int, Field(ge=1, le=1_000_000)]
    """How many actions may start within the window, whatever their rule or action."""
    per: Annotated[int, Field(ge=1, le=30 * 86400)] = 3600
    """The window, in seconds (1 s to 30 days)."""
    over: Literal["approve", "block"] = "approve"
    """Past the budget: approve (actions wait for a human approval) or block (they end
    blocked)."""


class Freeze(StrictModel):
    """One item of ``governors.freeze``: a change freeze, in which new actions need an
    approval or are blocked."""

    window: WeekWindowSpec
    """When (UTC): "Fri 18:00-Mon 06:00" (one stretch across days) or "Mon-Fri 09:00-18:00"
    (those hours of those days), as auto_approve's windows."""
    mode: Literal["approve", "block"] = "approve"
    """In the window: approve (actions wait for a human approval) or block (they end
    blocked)."""
    match: dict[str, MatcherSpec] = Field(default_factory=dict)
    """Label matchers the alert must match for the freeze to apply (as in a rule's match);
    empty: every alert."""


class Governors(StrictModel):
    """``governors:`` at the top of the policy: limits that hold across every action."""

    budget: Budget | None = None
    """A global budget of automated actions per window; unset: no budget."""
    freeze: list[Freeze] = Field(default_factory=list)
    """Change freezes: windows in which new actions need approval or are blocked."""


class ActionBase(StrictModel):
    """What every action type shares: approval, deadline, retries, fallback. A type adds
    its own keys and compiles them into the steps the engine runs (``steps``)."""

    type: str
    """The action type: the plugin that runs it (http, kubernetes, stackstorm, ssh, local, or
    an installed plugin's type)."""
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
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    """What a decision may fill in, by name: {type, enum, enum_from, pattern, minimum,
    maximum, default, description}; a plain value is a constant. The values reach steps
    as params.* and execute_config.params."""

    @field_validator("params", mode="before")
    @classmethod
    def _plain_values_are_constants(cls, params: Any) -> Any:
        if isinstance(params, dict):
            return {name: as_declared(declared) for name, declared in params.items()}
        return params

    fallback: str | None = None
    """Another action (by name) that runs next for the same incident when this one fails
    after its retries; on the timeline as a fallback."""
    verify: Verify | None = None
    """Check that the action fixed the incident once it succeeded (overrides the rule's
    verify key by key); unset: as the rule says, or no verification."""
    rollback: str | None = None
    """Another action (by name) that undoes this one: run when verification finds this one
    ineffective and on_ineffective is rollback. Unset on a kubernetes action: a rollback
    operation of the same target."""
    target_key: Template | None = None
    """What the action works on, as a template rendered at creation (alert, incident,
    settings), e.g. "{{ alert.labels.namespace }}/{{ alert.labels.deployment }}": actions
    with the same rendered target share its concurrency, limits and breaker; unset: the
    action as a whole is its target."""
    concurrency: Concurrency | None = None
    """How many actions may work on one target at once, and what a busy target does to the
    next one (delay or cancel); unset: no limit."""
    limits: list[RateLimit] = Field(default_factory=list)
    """Rate limits of this action per target, e.g. [{max: 3, per: 3600}]; past one, the
    action waits for approval or is blocked (its over key)."""
    breaker: Breaker | None = None
    """A circuit breaker of this action per target: repeated failures block it for a
    cooldown; unset: none."""

    @property
    def steps(self) -> list[Step]:
        """The steps the engine runs, the first one first."""
        raise NotImplementedError(f"action type {self.type!r} defines no steps")

    @property
    def deadline_seconds(self) -> float:
        """Seconds from the first step's start until the action fails with timeout."""
        return float(self.timeout)

    # Where this type's own keys name a declared secret (``policy check`` checks them).
    secret_paths: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @property
    def secret_names(self) -> list[str]:
        """The declared secrets this action's own keys name."""
        names = []
        for path in self.secret_paths:
            value: Any = self
            for part in path:
                value = getattr(value, part, None)
            if isinstance(value, str):
                names.append(value)
        return names

    @property
    def all_nodes(self) -> list[Step]:
        ticket = self.approval_ticket
        extra = [*ticket.nodes, *([ticket.on_expire] if ticket.on_expire else [])] if ticket else []
        return [*self.steps, *extra]

    def in_approval_phase(self, function: str) -> bool:
        return self.approval_ticket is not None and any(
            node.function == function for node in self.approval_ticket.nodes
        )

    @cached_property
    def nodes_by_function(self) -> dict[str, Step]:
        """Every step and approval-ticket node by its function; a wake looks its node up
        several times, and a config is shared by every action of its policy version."""
        return {node.function: node for node in reversed(self.all_nodes)}

    def node(self, function: str) -> Step:
        return self.nodes_by_function[function]


class HttpAction(ActionBase):
    """The node language: each node is one HTTP request (the FTA model)."""

    type: Literal["http"]
    """http: one node is one HTTP request."""
    nodes: Annotated[list[Node], Field(min_length=1)]
    """The nodes of the action; the first one runs first."""

    @property
    def steps(self) -> list[Step]:
        return list(self.nodes)

    @property
    def secret_names(self) -> list[str]:
        return [node.request.auth.secret for node in self.nodes if node.request.auth]


class ActionRef(StrictModel):
    action: str
    """The name of an action defined under actions."""
    params: dict[str, Template] = Field(default_factory=dict)
    """Values for the action's declared params, as templates of the alert and incident."""
    signal: list[Signal] = Field(default_factory=lambda: [Signal.FIRING], min_length=1)
    """On which signal the action starts: firing (a new alert occurrence) and/or resolved."""


class Rule(StrictModel):
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
    verify: Verify | None = None
    """Check that the rule's actions fixed the incident (each action may override it)."""
    decide: RuleDecide | None = None
    """Let heal choose the action among a catalogue (playbooks, LLM, expert rules: see the
    policy's decide section) instead of naming it under actions."""

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


class SecretRef(StrictModel):
    """A secret's value comes from the environment, never from the policy file."""

    env: str
    """The environment variable that holds the secret's value."""


class Defaults(StrictModel):
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    """Labels grouping the alerts that no rule matches into incidents."""


class KubernetesCluster(StrictModel):
    """How heal reaches one cluster: a kubeconfig (and context), or the pod's own
    service account."""

    kubeconfig: str | None = None
    """Path of a kubeconfig file (~ is expanded); unset with in_cluster false: $KUBECONFIG or
    ~/.kube/config."""
    context: str | None = None
    """The kubeconfig context to use; unset: the file's current context."""
    in_cluster: bool = False
    """Use the service account of the pod heal runs in (instead of a kubeconfig)."""

    @model_validator(mode="after")
    def _one_way_in(self) -> KubernetesCluster:
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("in_cluster: true takes no kubeconfig or context")
        return self


class KubernetesSettings(StrictModel):
    """``kubernetes:`` — the clusters kubernetes actions reach and where they may act."""

    clusters: dict[str, KubernetesCluster] = Field(default_factory=dict)
    """Clusters by name; an action picks one with cluster (default: the one named default)."""
    allowed_namespaces: list[MatcherSpec] = Field(default_factory=list)
    """Namespaces actions may touch, as matchers ("shop", "=~team-.*"); empty: none.
    kube-system is never allowed, whatever matches."""


class SshSettings(StrictModel):
    """``ssh:`` — how ssh actions trust the hosts they connect to."""

    known_hosts: str | None = None
    """Path of an OpenSSH known_hosts file; required for ssh actions: a host whose key is not
    in it is refused."""
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    """Seconds to wait for a connection and its handshake (0-120)."""


# -- notifications: ------------------------------------------------------------------
class _UrlChannel(StrictModel):
    url: str | None = None
    """The URL to post to, written here (prefer url_secret when it holds a token)."""
    url_secret: str | None = None
    """The name of a secret (under secrets:) holding the URL, for URLs that carry a token."""
    min_interval: Annotated[float, Field(ge=0, le=3600)] = 1.0
    """Seconds between two messages on this channel (a rate limit; 0: none)."""

    @model_validator(mode="after")
    def _one_url(self) -> _UrlChannel:
        if (self.url is None) == (self.url_secret is None):
            raise ValueError("give exactly one of url and url_secret")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class WebhookChannel(_UrlChannel):
    """A generic webhook: the event as JSON, signed with HMAC-SHA256 when secret is set."""

    type: Literal["webhook"]
    """The channel's kind."""
    secret: str | None = None
    """The name of a secret (under secrets:) that signs each body: X-Heal-Signature."""


class DiscordChannel(_UrlChannel):
    """A Discord incoming webhook."""

    type: Literal["discord"]
    """The channel's kind."""


class TeamsChannel(_UrlChannel):
    """A Microsoft Teams incoming webhook (a MessageCard)."""

    type: Literal["teams"]
    """The channel's kind."""


class EmailChannel(StrictModel):
    """Email over SMTP (STARTTLS unless turned off)."""

    type: Literal["email"]
    """The channel's kind."""
    host: str
    """The SMTP server's host name."""
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    """The SMTP server's port (587: submission with STARTTLS)."""
    starttls: bool = True
    """Upgrade the connection with STARTTLS before anything is sent (refuse if it cannot)."""
    username: str | None = None
    """The SMTP user name to log in with (with password_secret)."""
    password_secret: str | None = None
    """The name of a secret (under secrets:) holding the SMTP password."""
    sender: str = Field(alias="from")
    """The From address."""
    to: list[str] = Field(min_length=1)
    """The recipients."""
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    """Seconds to wait for the server."""
    min_interval: Annotated[float, Field(ge=0, le=3600)] = 0.0
    """Seconds between two messages on this channel (a rate limit; 0: none)."""

    @model_validator(mode="after")
    def _login_whole(self) -> EmailChannel:
        if (self.username is None) != (self.password_secret is None):
            raise ValueError("username and password_secret go together")
        return self


Channel = Annotated[
    WebhookChannel | DiscordChannel | TeamsChannel | EmailChannel, Field(discriminator="type")
]


class Route(StrictModel):
    """Which events of which incidents go to which channels."""

    match: dict[str, MatcherSpec] = Field(default_factory=dict)
    """Label matchers on the incident's labels (its group labels and severity); empty: all."""
    events: list[Event] = Field(min_length=1)
    """The events this route sends."""
    channels: list[str] = Field(min_length=1)
    """Channel names: ones under notifications.channels, or slack / telegram (settings)."""

    def matchers(self) -> list[LabelMatcher]:
        return [LabelMatcher.parse(name, str(spec)) for name, spec in self.match.items()]

    def matches(self, event: Event, labels: dict[str, str]) -> bool:
        return event in self.events and all(m.matches(labels) for m in self.matchers())


class Notifications(StrictModel):
    """``notifications:`` — channels by name and the routes of events to them."""

    channels: dict[str, Channel] = Field(default_factory=dict)
    """Channels by name (slack and telegram are the chats configured by settings)."""
    routes: list[Route] = Field(default_factory=list)
    """Every route that matches an event sends it (a channel gets it once)."""
    collapse_after: Annotated[int, Field(ge=2, le=1000)] = 5
    """In a storm: when this many messages for one incident wait for one channel, they go
    out as one update."""

    @model_validator(mode="after")
    def _known_channels(self) -> Notifications:
        clash = CHAT_CHANNELS & set(self.channels)
        if clash:
            raise ValueError(f"{sorted(clash)} name the settings' chats; pick another name")
        for route in self.routes:
            unknown = [c for c in route.channels if c not in {*self.channels, *CHAT_CHANNELS}]
            if unknown:
                raise ValueError(f"a route names unknown channels: {', '.join(unknown)}")
        return self

    def targets(self, event: Event, labels: dict[str, str]) -> list[str]:
        """The channels ``event`` goes to, each once, in the order routes name them."""
        found: list[str] = []
        for route in self.routes:
            if route.matches(event, labels):
                found += [c for c in route.channels if c not in found]
        return found


class Policy(StrictModel):
    settings: dict[str, Any] = Field(default_factory=dict)
    """Plain values, visible to templates and expressions as settings.*."""
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    """Human approval of actions; off unless enabled."""
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    """Named secrets, read from the environment (never written here)."""
    defaults: Defaults = Field(default_factory=Defaults)
    """Defaults for alerts no rule matches."""
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    """Clusters and allowed namespaces of kubernetes actions."""
    ssh: SshSettings = Field(default_factory=SshSettings)
    """Host key checking of ssh actions."""
    notifications: Notifications = Field(default_factory=Notifications)
    """Whom heal tells what: channels by name and routes of events to them."""
    governors: Governors = Field(default_factory=Governors)
    """Safety governors across all actions (the global budget); each action has its own
    concurrency, limits and breaker."""
    decide: DecideSettings = Field(default_factory=DecideSettings)
    """How heal chooses an action for rules with decide: tiers and time budget."""
    actions: dict[str, ActionBase] = Field(default_factory=dict)
    """What can be done, by name. Validated against the installed action types: load a policy
    with heal.policy.loader (or validate with heal.policy.plugins.policy_model())."""
    rules: list[Rule] = Field(default_factory=list)
    """When to do it: tried in order, the first that matches owns the alert."""

    @model_validator(mode="after")
    def _notifications_refer_to_what_exists(self) -> Policy:
        for name, channel in self.notifications.channels.items():
            named = [getattr(channel, key, None) for key in _CHANNEL_SECRET_KEYS]
            missing = [n for n in named if n is not None and n not in self.secrets]
            if missing:
                raise ValueError(
                    f"notifications channel {name!r} names undeclared secrets: "
                    + ", ".join(missing)
                )
        for name, action in self.actions.items():
            target = getattr(action, "channel", None) if action.type == "notify" else None
            known = {*self.notifications.channels, *CHAT_CHANNELS}
            if target is not None and target not in known:
                raise ValueError(
                    f"action {name!r} notifies channel {target!r}, which is neither under "
                    "notifications.channels nor slack or telegram"
                )
        return self


_CHANNEL_SECRET_KEYS = ("url_secret", "secret", "password_secret")
