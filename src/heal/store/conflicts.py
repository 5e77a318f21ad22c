"""Telling a lost race from a bug, or an outage, among the database's errors."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

# SQLSTATEs (PostgreSQL) that only concurrency causes; running the transaction again,
# once the other has committed, succeeds.
_LOST_RACE = {
    "23505",  # unique_violation: another transaction stored the same key first
    "40P01",  # deadlock_detected: two batches locked the same keys in another order
    "40001",  # serialization_failure
}
_SQLITE_UNIQUE = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def is_lost_race(error: DBAPIError) -> bool:
    """Another transaction got there first; this one may simply be run again."""
    original = error.orig
    return (
        getattr(original, "sqlstate", None) in _LOST_RACE
        or getattr(original, "sqlite_errorname", None) in _SQLITE_UNIQUE
    )
