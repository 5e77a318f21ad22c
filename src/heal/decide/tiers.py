"""What a tier is: given an incident and what it may choose from, a proposal or a reason.

The decision service (``heal.decide.service``) runs the tiers in order within the
decision's budget (each call gets the monotonic time it must be done by, and is cancelled
past it), then checks every proposal the same way (catalogue, params) before it may win;
a tier need not check either itself, but may, to try again or say more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from heal.domain.decisions import Proposal, TierName
from heal.policy.models import ActionBase, Policy, Rule


@dataclass(frozen=True, slots=True)
class DecisionInput:
    """Everything a tier may look at. ``alerts``: the incident's firing alerts, each
    ``{name, labels, annotations, status, starts_at}`` (the first one started the
    decision); ``catalogue``: the actions allowed, by name, with their configs."""

    decision_id: int
    incident: Mapping[str, Any]
    alerts: Sequence[Mapping[str, Any]]
    rule: Rule
    catalogue: Mapping[str, ActionBase]
    policy: Policy
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return str(self.incident.get("severity") or "")

    @property
    def first_alert(self) -> Mapping[str, Any]:
        return self.alerts[0] if self.alerts else {}


@dataclass(frozen=True, slots=True)
class TierAnswer:
    """A tier's answer: a proposal, or why there is none (no match, a timeout, a refused
    or malformed answer). ``notes``: extra facts for the timeline (e.g. the rejected
    proposals a consensus saw)."""

    proposal: Proposal | None = None
    reason: str | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def none(cls, reason: str, **notes: Any) -> TierAnswer:
        return cls(None, reason, notes)


class Tier(Protocol):
    """One tier. ``propose`` must not write to the database (it runs outside any
    transaction, and may be abandoned at ``deadline``, a ``time.monotonic()`` value)."""

    name: TierName

    async def propose(self, request: DecisionInput, deadline: float) -> TierAnswer: ...


@dataclass(frozen=True, slots=True)
class KnowledgeHit:
    """One knowledge-base entry found for a query: a past remediation or a runbook."""

    kind: str  # "remediation" or "runbook"
    title: str
    text: str
    score: float
    ref: str = ""  # where it comes from: "incident 12", "runbooks/disk.md"


class KnowledgeSearch(Protocol):
    """The knowledge base as the LLM tier sees it (``heal.decide.knowledge``)."""

    async def search(self, query: str, limit: int) -> list[KnowledgeHit]: ...
