"""Who may do what: token scopes, the scopes each role brings, valid user names.

A token's scopes bound what it may call; a person's role bounds what they may do. A
service token (``HEAL_API_TOKENS``) has scopes but is nobody: it never signs approvals.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import IntEnum, StrEnum

# heal itself requests approvals for the actions its rules start: no person may be "heal".
HEAL_REQUESTER = "heal"
# Lower case, starting with a letter or digit: safe in a shell, a log line and a URL,
# and never mistaken for the "token:…", "itsm:…" names heal gives non-people.
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
USER_NAME_RULE = "1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
RESERVED_NAMES = frozenset({HEAL_REQUESTER})


class Role(IntEnum):
    """Ordered: each role may do everything the ones below it may."""

    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {name!r} (roles: {', '.join(r.name.lower() for r in cls)})"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def a_label(self) -> str:
        """The label with its article (a viewer, an operator), for messages."""
        return ("an " if self.label[0] in "aeiou" else "a ") + self.label


class Scope(StrEnum):
    INGEST = "ingest"  # post alerts (Alertmanager)
    READ = "read"  # incidents, actions, approvals, silences
    OPERATE = "operate"  # silences, cancelling actions
    APPROVE = "approve"  # sign approvals (people only)
    ADMIN = "admin"  # every scope

    @classmethod
    def parse_list(cls, text: str, separator: str = "+") -> frozenset[Scope]:
        names = [part.strip().lower() for part in text.split(separator)]
        known = {scope.value for scope in cls}
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(
                f"unknown scope {', '.join(map(repr, unknown)) or repr(text)} "
                f"(scopes: {', '.join(scope.value for scope in cls)})"
            )
        return frozenset(cls(name) for name in names)


ALL_SCOPES = frozenset(Scope)
_ROLE_SCOPES = {
    Role.VIEWER: frozenset({Scope.READ}),
    Role.OPERATOR: frozenset({Scope.READ, Scope.INGEST, Scope.OPERATE}),
    Role.APPROVER: frozenset({Scope.READ, Scope.INGEST, Scope.OPERATE, Scope.APPROVE}),
    Role.ADMIN: ALL_SCOPES,
}


def role_scopes(role: Role) -> frozenset[Scope]:
    return _ROLE_SCOPES[role]


def effective_scopes(granted: frozenset[Scope]) -> frozenset[Scope]:
    """``admin`` brings every scope."""
    return ALL_SCOPES if Scope.ADMIN in granted else granted


def check_user_name(name: str) -> None:
    if not _USER_NAME.fullmatch(name):
        raise ValueError(f"user name {name!r} is not valid: {USER_NAME_RULE}")
    if name in RESERVED_NAMES:
        raise ValueError(f"user name {name!r} is reserved (heal requests approvals as it)")


def token_refusal(
    user: str,
    *,
    disabled: bool,
    revoked_at: datetime | None,
    expires_at: datetime | None,
    now: datetime,
) -> str | None:
    """Why a user's token may not be used now, or None when it may."""
    if disabled:
        return f"user {user} is disabled"
    if revoked_at is not None:
        return "this token was revoked"
    if expires_at is not None and now >= expires_at:
        return f"this token expired at {expires_at.isoformat(timespec='seconds')}"
    return None
