"""Tier 3: the expert rules. The first rule whose match fits the incident's first alert,
whose action the deciding rule allows and whose params (rendered from the alert) validate
proposes its action; the last rule is a default, so this tier always has an answer.
Confidence 0: a rule match is not a judgement."""

from __future__ import annotations

from typing import Any

from heal.decide.tiers import DecisionInput, TierAnswer
from heal.domain.decisions import Proposal, TierName
from heal.domain.matchers import matches_all
from heal.policy.params import ParamsRejected, render_params, validate_params


class ExpertTier:
    name = TierName.EXPERT

    async def propose(self, request: DecisionInput, deadline: float) -> TierAnswer:
        return propose(request)


def propose(request: DecisionInput) -> TierAnswer:
    """The expert rules' answer; synchronous, so it also serves a decision whose budget
    has run out (the sweep's fallback)."""
    alert = request.first_alert
    labels: dict[str, str] = dict(alert.get("labels") or {})
    context: dict[str, Any] = {
        "alert": alert,
        "incident": request.incident,
        "settings": request.policy.settings,
    }
    passed: list[str] = []
    for rule in request.policy.decide.expert_rules:
        if not matches_all(rule.matchers(), labels):
            continue
        config = request.catalogue.get(rule.action)
        if config is None:
            passed.append(f"{rule.name}: {rule.action!r} is not in the catalogue")
            continue
        try:
            rendered = render_params(rule.params, config.params, context)
            params = validate_params(config.params, rendered, request.policy)
        except ParamsRejected as exc:
            passed.append(f"{rule.name}: {exc.reason}")
            continue
        return TierAnswer(
            Proposal(
                tier=TierName.EXPERT,
                action=rule.action,
                params=params,
                confidence=0.0,
                rationale=rule.rationale or f"expert rule {rule.name!r} matched",
                evidence={"expert_rule": rule.name},
            ),
            notes={"passed": passed} if passed else {},
        )
    why = "; ".join(passed) if passed else "no expert rule matches"
    return TierAnswer.none(why)
