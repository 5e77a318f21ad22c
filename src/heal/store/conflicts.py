"""Telling a lost race from a bug among the database's integrity errors."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

_UNIQUE_VIOLATION = "23505"  # SQLSTATE, PostgreSQL
_SQLITE_UNIQUE = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def is_unique_violation(error: IntegrityError) -> bool:
    """A unique index refused a row: another transaction stored the same key first."""
    original = error.orig
    return (
        getattr(original, "sqlstate", None) == _UNIQUE_VIOLATION
        or getattr(original, "sqlite_errorname", None) in _SQLITE_UNIQUE
    )
