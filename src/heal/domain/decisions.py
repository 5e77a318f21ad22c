"""A decision: which allowed action, with which parameters, heal proposes for an incident.

Three tiers are tried in order within one time budget: playbooks (what verifiably fixed
the same symptoms before), an optional LLM, and the expert rules (first match; never
fails). Every tier's answer is checked the same way (the action is in the rule's
catalogue, the parameters validate against the action's ``params``) before it may win.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DecisionState(StrEnum):
    INIT = "init"
    """Stored with its deadline; nothing tried yet."""
    ANALYZING = "analyzing"
    """A process is running the tiers (its lease on the row says until when)."""
    READY = "ready"
    """A proposal won; its action exists (waiting for approval, or about to run)."""
    EXECUTING = "executing"
    """The proposed action is running."""
    COMPLETED = "completed"
    """The proposed action ended (its status and outcome say how)."""
    ERROR = "error"
    """No tier could propose an allowed action (the reason is recorded)."""

    @property
    def is_final(self) -> bool:
        return self in (DecisionState.COMPLETED, DecisionState.ERROR)


class TierName(StrEnum):
    PLAYBOOK = "playbook"
    LLM = "llm"
    EXPERT = "expert"


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a tier proposes: an action of the catalogue and its parameters.

    ``confidence``: the LLM's own, 0 for every other tier (a rule match or a playbook is
    not an AI judgement; auto-approval looks at ``evidence`` for a playbook's lower bound).
    ``evidence``: what the tier based it on (playbook id, similarity, lower bound; model,
    samples agreeing; expert rule name), kept on the decision and its timeline.
    """

    tier: TierName
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.0
    rationale: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TierAttempt:
    """One tier's try: its proposal, or why it had none or was rejected, and how long it
    took. Exactly one of ``proposal`` (accepted) and ``rejected`` is set, unless the tier
    simply had nothing to say (``rejected`` then says so too)."""

    tier: TierName
    latency_ms: float
    proposal: Proposal | None = None
    rejected: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The attempt as stored on the decision row and written on the timeline."""
        record: dict[str, Any] = {"tier": self.tier.value, "latency_ms": round(self.latency_ms, 1)}
        if self.proposal is not None:
            record["proposal"] = proposal_record(self.proposal)
        if self.rejected is not None:
            record["rejected"] = self.rejected
        return record


def proposal_record(proposal: Proposal) -> dict[str, Any]:
    return {
        "tier": proposal.tier.value,
        "action": proposal.action,
        "params": proposal.params,
        "confidence": proposal.confidence,
        "rationale": proposal.rationale,
        "evidence": proposal.evidence,
    }


def proposal_from_record(record: dict[str, Any]) -> Proposal:
    return Proposal(
        tier=TierName(record["tier"]),
        action=record["action"],
        params=dict(record.get("params") or {}),
        confidence=float(record.get("confidence") or 0.0),
        rationale=str(record.get("rationale") or ""),
        evidence=dict(record.get("evidence") or {}),
    )
