"""``decide:`` — how heal chooses an action for a rule that lets it (``rules[].decide``):
playbooks first, then an optional LLM, then the expert rules, within one time budget."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from heal.domain.matchers import LabelMatcher
from heal.policy.base import MatcherSpec, StrictModel, Template


class PlaybookTier(StrictModel):
    """``decide.playbooks`` — remediations that verifiably fixed the same symptoms."""

    enabled: bool = True
    """Whether approved playbooks are looked up first."""
    min_similarity: Annotated[float, Field(ge=0, le=1)] = 0.85
    """How alike (0-1) an incident's symptoms and a playbook's must be for the playbook to
    be proposed, when no playbook has exactly the same signature."""
    timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    """Seconds the lookup may take before the next tier runs."""


class Consensus(StrictModel):
    """Ask the LLM several times for incidents of these severities; enough answers must
    name the same action and params."""

    severities: list[str] = Field(default_factory=lambda: ["critical", "P0", "P1"])
    """Severities (the incident's severity label) that need consensus."""
    samples: Annotated[int, Field(ge=2, le=9)] = 3
    """How many answers to ask for."""
    agree: Annotated[int, Field(ge=2, le=9)] = 2
    """How many of them must propose the same action with the same params."""

    @model_validator(mode="after")
    def _agree_within_samples(self) -> Consensus:
        if self.agree > self.samples:
            raise ValueError(f"agree ({self.agree}) is more than samples ({self.samples})")
        return self


class LlmTier(StrictModel):
    """``decide.llm`` — any OpenAI-compatible chat completions endpoint."""

    base_url: str
    """The API's base URL, e.g. http://127.0.0.1:11434/v1 (heal posts to
    {base_url}/chat/completions)."""
    model: str
    """The model name the server knows."""
    api_key: str | None = None
    """A declared secret (under secrets:) holding the API key, sent as a bearer token."""
    timeout: Annotated[float, Field(gt=0, le=300)] = 20.0
    """Seconds one call may take (the decision's budget may cut it shorter)."""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    """Sampling temperature; 0 asks for the most likely answer."""
    max_tokens: Annotated[int, Field(ge=64, le=32_768)] = 1024
    """The longest answer asked for."""
    consensus: Consensus | None = None
    """Several answers must agree for the listed severities; unset: one answer."""
    anonymize_labels: list[str] = Field(default_factory=list)
    """Labels whose values are replaced by stable placeholders before the prompt leaves heal
    (e.g. instance, pod); the answer's params are mapped back."""
    knowledge_hits: Annotated[int, Field(ge=0, le=20)] = 3
    """How many knowledge-base entries the prompt carries at most."""


class KnowledgeSettings(StrictModel):
    """``decide.knowledge`` — what the LLM is told from past remediations and runbooks."""

    dirs: list[str] = Field(default_factory=list)
    """Directories of operator runbooks (Markdown files), indexed for search."""
    context_timeout: Annotated[float, Field(gt=0, le=30)] = 5.0
    """Seconds the knowledge-base search may take; past it the prompt goes without."""


class ExpertRule(StrictModel):
    """One rule-based default: the first whose match fits the incident's alert wins."""

    name: str
    """The rule's name, on the timeline when it wins."""
    match: dict[str, MatcherSpec] = Field(default_factory=dict)
    """Label matchers on the alert (as a rule's match); empty: every alert (a default)."""
    action: str
    """The action it proposes, by name; it must be in the deciding rule's catalogue."""
    params: dict[str, Template] = Field(default_factory=dict)
    """The action's params, as templates of the alert and incident."""
    rationale: str = ""
    """Why this is the sane default, shown to people approving it."""

    def matchers(self) -> list[LabelMatcher]:
        return [LabelMatcher.parse(name, str(spec)) for name, spec in self.match.items()]


class DecideSettings(StrictModel):
    """``decide:`` — the tiers and the time budget of every decision."""

    budget: Annotated[float, Field(ge=1, le=300)] = 30.0
    """Seconds for the whole decision; a slower tier is abandoned and the next one runs."""
    playbooks: PlaybookTier = Field(default_factory=PlaybookTier)
    """Tier 1: learned playbooks."""
    llm: LlmTier | None = None
    """Tier 2: an LLM; unset: none."""
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    """The knowledge base the LLM's prompt draws on."""
    expert_rules: list[ExpertRule] = Field(default_factory=list)
    """Tier 3: rule-based defaults, the first match wins; the last must match everything
    (a default) when any rule decides, so a decision never ends without a proposal."""


class RuleDecide(StrictModel):
    """``rules[].decide`` — heal chooses the rule's action among these."""

    catalogue: Annotated[list[str], Field(min_length=1)]
    """The actions a decision may propose for this rule, by name; nothing else is ever
    run."""
