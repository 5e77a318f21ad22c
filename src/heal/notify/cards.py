"""What an approval card says, independent of the chat it is posted to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Verb(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    DETAILS = "details"


BUTTONS: tuple[tuple[Verb, str], ...] = (
    (Verb.APPROVE, "✅ Approve"),
    (Verb.REJECT, "❌ Reject"),
    (Verb.DETAILS, "🔎 Details"),
)
_PREFIX = "heal"


def button_data(approval_id: int, verb: Verb) -> str:
    """What a button carries back (Telegram allows 64 bytes; this is ~20)."""
    return f"{_PREFIX}:{approval_id}:{verb.value}"


def parse_button_data(data: str) -> tuple[int, Verb] | None:
    """``(approval id, verb)`` from a button's data, or None when it is not heal's."""
    prefix, _, rest = data.partition(":")
    number, _, verb = rest.partition(":")
    if prefix != _PREFIX or not number.isdigit():
        return None
    try:
        return int(number), Verb(verb)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Card:
    approval_id: int
    incident_id: int
    incident_title: str
    resource: dict[str, str]
    action: str
    description: str
    risk: str
    required_signatures: int
    expires_at: datetime

    @property
    def title(self) -> str:
        return f"Approval needed: {self.action} for incident #{self.incident_id}"

    def facts(self) -> list[tuple[str, str]]:
        resource = ", ".join(f"{k}={v}" for k, v in sorted(self.resource.items())) or "-"
        action = f"{self.action} ({self.description})" if self.description else self.action
        return [
            ("Incident", f"#{self.incident_id} {self.incident_title}"),
            ("Resource", resource),
            ("Suggested action", action),
            ("Risk", self.risk),
            ("Signatures needed", str(self.required_signatures)),
            ("Expires", self.expires_at.strftime("%Y-%m-%d %H:%M UTC")),
        ]

    def text(self) -> str:
        return "\n".join([self.title, *(f"{name}: {value}" for name, value in self.facts())])


# -- the rating prompt: one per resolved incident, in its card's thread -------------------
RATING_QUESTION = "How well did the remediation work?"
SCORES = (1, 2, 3, 4, 5)
_RATE_PREFIX = "heal-rate"


def rating_data(incident_id: int, score: int) -> str:
    """What a rating button carries back (Telegram's callback_data; Slack's value)."""
    return f"{_RATE_PREFIX}:{incident_id}:{score}"


def parse_rating_data(data: str) -> tuple[int, int] | None:
    """``(incident id, score)`` from a rating button's data, or None when it is not one."""
    prefix, _, rest = data.partition(":")
    number, _, score = rest.partition(":")
    if prefix != _RATE_PREFIX or not number.isdigit() or score not in {str(s) for s in SCORES}:
        return None
    return int(number), int(score)


def rating_action_id(score: int) -> str:
    """A Slack button's action_id: unique within its block, as Slack requires."""
    return f"{_RATE_PREFIX}-{score}"


@dataclass(frozen=True, slots=True)
class RatingPrompt:
    incident_id: int
    incident_title: str
    # (who, score), oldest first: what the message shows once people have rated.
    ratings: tuple[tuple[str, int], ...] = ()

    @property
    def question(self) -> str:
        return (
            f"Incident #{self.incident_id} {self.incident_title} resolved. {RATING_QUESTION} "
            "Rate it from 1 (not at all) to 5 (fully)."
        )

    @property
    def rated(self) -> str | None:
        if not self.ratings:
            return None
        return "Rated: " + ", ".join(f"{who} {score}/5" for who, score in self.ratings)

    def text(self) -> str:
        return "\n".join(line for line in (self.question, self.rated) if line)
