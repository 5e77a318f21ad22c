"""What heal stores, decided once so that every backend gives the same answer.

SQLite keeps whatever it is given; PostgreSQL refuses a NUL in text or JSON and a string
longer than its column. Left to the database, one bad value is a 500 on one backend and a
stored row on the other. These rules run before any write, on every backend: what can be
stored faithfully is (a NUL escaped, an over-long key hashed), the rest is refused by
name. The sizes are those of the columns in ``heal.store.tables``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

SEVERITY_MAX = 50  # incidents.severity
FINGERPRINT_MAX = 128  # alerts.fingerprint
GROUP_KEY_MAX = 512  # incidents.group_key and open_key
TITLE_MAX = 500  # incidents.title

# Written out as JSON spells it, so an operator reading the label sees what was sent.
NUL_ESCAPE = "\\u0000"


class Unstorable(ValueError):
    """A value heal refuses to store; ``field`` names it, relative to its owner."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def storable_text(value: str, field: str = "value") -> str:
    """``value`` with each NUL escaped; a lone surrogate (no UTF-8 form) is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable(field, "contains a lone surrogate, which is not valid Unicode") from None
    return value.replace("\x00", NUL_ESCAPE)


def bounded_key(value: str, limit: int) -> str:
    """``value``, or its SHA-256 when longer than ``limit`` characters.

    A key only has to stay stable and distinct, not readable: hashing keeps both where
    truncating would merge keys that share a long prefix.
    """
    if len(value) <= limit:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def bounded_text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters (with an ellipsis): for text shown, not keyed."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def utc(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC); refused when UTC has no such time (year 10000)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1 to 9999 once converted to UTC") from None
