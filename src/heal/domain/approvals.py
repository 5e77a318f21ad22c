"""Approvals: who may sign, when quorum is reached, what auto-approval allows.

Pure rules; the approval service applies them inside the transaction that records a
signature, so that two signers at once or a signer racing the expiry end in exactly
one outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from enum import IntEnum, StrEnum
from typing import Any

from heal.domain.access import HEAL_REQUESTER as HEAL_REQUESTER
from heal.domain.access import Role as Role
from heal.domain.access import Scope, role_scopes

# A signature given with direct database access (`heal approvals approve --break-glass`):
# nothing proves who typed the name, so all of them together count as one signature.
BREAK_GLASS = "break-glass"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    # Ended unanswered because its action can no longer run (incident resolved, action
    # cancelled): not a decision by anyone, so neither rejected nor expired.
    OBSOLETE = "obsolete"

    @property
    def is_final(self) -> bool:
        return self is not ApprovalStatus.PENDING


class OnResolve(StrEnum):
    """What a pending approval becomes when its incident resolves."""

    OBSOLETE = "obsolete"  # the approval ends and its action is skipped
    KEEP = "keep"  # it stays pending: approving still runs the action


class RiskLevel(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, name: str) -> RiskLevel:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Signer:
    """Who is acting: a person (their role and groups), or a service token (``service``).

    ``scopes`` bound what this credential may do; None means all that the role allows.
    """

    name: str
    role: Role
    groups: frozenset[str]
    service: bool = False
    scopes: frozenset[Scope] | None = None

    def may(self, scope: Scope) -> bool:
        granted = role_scopes(self.role) if self.scopes is None else self.scopes
        return Scope.ADMIN in granted or scope in granted


class SignRefused(Exception):
    """The signer may not sign this approval; ``reason`` says why (for a 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_may_sign(
    signer: Signer, *, requester: str, approver_groups: list[str], already_signed: list[str]
) -> None:
    if signer.service:
        raise SignRefused(
            f"{signer.name} is a service token; only people sign approvals "
            "(use your own token from `heal users token new NAME`)"
        )
    if signer.role < Role.APPROVER:
        raise SignRefused(
            f"{signer.name} is {signer.role.a_label}; approving needs the approver or admin role"
        )
    if not signer.may(Scope.APPROVE):
        raise SignRefused(f"this token of {signer.name} lacks the approve scope")
    if approver_groups and not signer.groups & set(approver_groups):
        raise SignRefused(
            f"{signer.name} is in none of the approver groups {sorted(approver_groups)}"
        )
    if signer.name == requester:
        raise SignRefused(
            f"{signer.name} requested this action and cannot approve it (separation of duties)"
        )
    if signer.name in already_signed:
        raise SignRefused(f"{signer.name} has already signed this approval")


def counted_signatures(approvals: list[str]) -> int:
    """How many approving signatures count toward the quorum, given each one's channel:
    break-glass ones count as one at most, whoever they name."""
    people = sum(1 for channel in approvals if channel != BREAK_GLASS)
    return people + min(1, len(approvals) - people)


def quorum_reached(signatures: int, required: int) -> bool:
    return signatures >= required


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``Mon-Fri 09:00-18:00`` (UTC): days inclusive, times [start, end)."""

    days: frozenset[int]
    start: time
    end: time

    _DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

    @classmethod
    def parse(cls, spec: str) -> TimeWindow:
        try:
            day_part, time_part = spec.split()
            first, _, last = day_part.lower().partition("-")
            a = cls._DAYS.index(first)
            b = cls._DAYS.index(last or first)
            days = (
                frozenset(range(a, b + 1))
                if a <= b
                else frozenset([*range(a, 7), *range(0, b + 1)])
            )
            start_text, end_text = time_part.split("-")
            start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
        except ValueError as exc:
            raise ValueError(f"time window {spec!r} is not like 'Mon-Fri 09:00-18:00'") from exc
        return cls(days, start, end)

    def contains(self, moment: datetime) -> bool:
        if moment.weekday() not in self.days:
            return False
        now = moment.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end  # overnight, e.g. 22:00-06:00


@dataclass(frozen=True, slots=True)
class WeekSpan:
    """``Fri 18:00-Mon 06:00`` (UTC): one stretch of the week, from a day and time to
    another, across the days between; [start, end)."""

    start: int  # minutes since Monday 00:00
    end: int

    @classmethod
    def parse(cls, spec: str) -> WeekSpan:
        try:
            begin, finish = spec.split("-")
            return cls(cls._minute(begin), cls._minute(finish))
        except ValueError as exc:
            raise ValueError(f"time window {spec!r} is not like 'Fri 18:00-Mon 06:00'") from exc

    @staticmethod
    def _minute(part: str) -> int:
        day, clock = part.split()
        at = time.fromisoformat(clock)
        return TimeWindow._DAYS.index(day.lower()) * 1440 + at.hour * 60 + at.minute

    def contains(self, moment: datetime) -> bool:
        minute = moment.weekday() * 1440 + moment.hour * 60 + moment.minute
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # across Sunday midnight


def week_window(spec: str) -> TimeWindow | WeekSpan:
    """A window as ``auto_approve.windows`` writes it (``Mon-Fri 09:00-18:00``: those days,
    those hours), or one stretch across days (``Fri 18:00-Mon 06:00``)."""
    if len(spec.split()) == 3:
        return WeekSpan.parse(spec)
    return TimeWindow.parse(spec)


def person(user: Mapping[str, Any], scopes: frozenset[Scope] | None = None) -> Signer:
    """The signer a user row stands for (``scopes``: what their token was narrowed to)."""
    return Signer(user["name"], Role.parse(user["role"]), frozenset(user["groups"]), False, scopes)
