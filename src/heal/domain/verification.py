"""Whether a fix worked: the outcomes of a verified action and the effectiveness score.

An action's *status* says whether it ran; its *outcome* says whether the incident it was
for went away and stayed away (``verify:`` in the policy). The score is what playbooks
learn from: a person's rating when there is one, else what the outcome says.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    PENDING = "pending"
    """The action succeeded; heal watches the incident."""
    VERIFIED = "verified"
    """Every alert resolved within ``within`` and none fired again for ``quiet_for``."""
    INEFFECTIVE = "ineffective"
    """Alerts still fired at ``within`` (the incident may resolve later: "resolved late")."""
    RELAPSED = "relapsed"
    """The alerts resolved, then fired again within ``quiet_for``."""

    @property
    def is_final(self) -> bool:
        return self is not Outcome.PENDING

    @property
    def is_failure(self) -> bool:
        return self in (Outcome.INEFFECTIVE, Outcome.RELAPSED)


class OnIneffective(StrEnum):
    """What heal does when a verified action turns out ineffective or relapses."""

    ESCALATE = "escalate"
    ROLLBACK = "rollback"
    NONE = "none"


MIN_SCORE = 1
MAX_SCORE = 5
SCORE_VERIFIED = 5
SCORE_RESOLVED_LATE = 4
SCORE_FAILED = 1


def valid_score(score: int) -> bool:
    return MIN_SCORE <= score <= MAX_SCORE


def effectiveness_score(
    rating: int | None, outcome: Outcome | None, *, incident_resolved: bool
) -> int | None:
    """The effectiveness (1-5) of an incident's remediation, None while unknown.

    A person's latest rating wins. Without one: verified is 5; ineffective, but the
    incident resolved afterwards (resolved late), 4; ineffective or relapsed, 1. No
    outcome (nothing was verified) or one still pending: unknown.
    """
    if rating is not None:
        return rating
    if outcome is None or outcome is Outcome.PENDING:
        return None
    if outcome is Outcome.VERIFIED:
        return SCORE_VERIFIED
    if outcome is Outcome.INEFFECTIVE and incident_resolved:
        return SCORE_RESOLVED_LATE
    return SCORE_FAILED
