"""Circuit breakers per action and target, from the rows.

A breaker opens when ``failures`` failures (or ineffective outcomes of verification) of
one action on one target happened within ``within`` seconds, counted since the breaker last
closed; it stays open for ``cooldown`` seconds after the failure that opened it, or until
an operator resets it. A reset or the cooldown's end closes it: only failures after that
count towards opening it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import ActionStatus, FailureType
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind, TimelineEntry
from heal.observability import logging as heal_logging
from heal.observability import metrics
from heal.policy.models import Breaker
from heal.store import timeline_repo
from heal.store.tables import actions, breakers, verifications

log = heal_logging.get_logger("heal.governors")

# Failures that say nothing about the action on its target: a person cancelled it, it was
# never created properly, a governor refused it.
_NOT_COUNTED = (
    FailureType.USER_ABORT.value,
    FailureType.CREATE_FAILURE.value,
    FailureType.BLOCKED.value,
)


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failure (or ineffective outcome) that counts towards opening a breaker."""

    at: datetime
    action_id: int
    incident_id: int


@dataclass(frozen=True, slots=True)
class OpenBreaker:
    id: int
    failures: int
    opened_at: datetime
    closes_at: datetime

    def describe(self, action_name: str, target: str) -> str:
        where = f" on {target}" if target else ""
        return (
            f"circuit breaker #{self.id} of {action_name!r}{where} is open: {self.failures} "
            f"failure(s) since {self.opened_at:%Y-%m-%d %H:%M:%S} UTC; it closes at "
            f"{self.closes_at:%Y-%m-%d %H:%M:%S} UTC or when reset (heal breakers reset "
            f"{self.id})"
        )


async def evaluate(
    connection: AsyncConnection,
    action_name: str,
    target: str | None,
    config: Breaker,
    now: datetime,
    redact: Redactor | None = None,
) -> OpenBreaker | None:
    """The breaker of the action on the target if it is open now, opening it when the
    failures in the rows say it must (the opening is written on the timelines of the
    incidents whose actions failed)."""
    stored = (
        await connection.execute(
            select(breakers).where(
                breakers.c.action_name == action_name, breakers.c.target == (target or "")
            )
        )
    ).first()
    if stored is not None and stored.closes_at > now:
        return OpenBreaker(stored.id, stored.failures, stored.opened_at, stored.closes_at)
    since = now - timedelta(seconds=config.within)
    if stored is not None and stored.closes_at > since:
        since = stored.closes_at
    failures = await _failures(connection, action_name, target, since)
    if len(failures) < config.failures:
        return None
    closes_at = max(f.at for f in failures) + timedelta(seconds=config.cooldown)
    if closes_at <= now:
        return None  # it would have opened, and its cooldown has passed already
    tripped_by = [{"action_id": f.action_id, "incident_id": f.incident_id} for f in failures]
    breaker_id = await _open(
        connection, action_name, target or "", len(failures), now, closes_at, tripped_by
    )
    opened = OpenBreaker(breaker_id, len(failures), now, closes_at)
    await _announce_opening(connection, opened, action_name, target, config, failures, redact)
    return opened


async def _announce_opening(
    connection: AsyncConnection,
    opened: OpenBreaker,
    action_name: str,
    target: str | None,
    config: Breaker,
    failures: Sequence[_Failure],
    redact: Redactor | None,
) -> None:
    where = f" on {target}" if target else ""
    ids = ", ".join(f"#{f.action_id}" for f in sorted(failures, key=lambda f: f.action_id))
    message = (
        f"circuit breaker #{opened.id} of {action_name!r}{where} opened: {opened.failures} "
        f"failure(s) within {config.within} s ({ids}); new actions there are blocked until "
        f"{opened.closes_at:%Y-%m-%d %H:%M:%S} UTC or a reset (heal breakers reset {opened.id})"
    )
    data = {
        "breaker_id": opened.id,
        "action": action_name,
        "target": target,
        "failures": opened.failures,
        "closes_at": opened.closes_at.isoformat(),
    }
    await _note_incidents(
        connection, EventKind.BREAKER_OPENED, message, data, failures, opened.opened_at, redact
    )
    metrics.BREAKERS_OPENED.labels(action_name).inc()
    log.warning(
        "circuit breaker opened",
        breaker_id=opened.id,
        action=action_name,
        target=target,
        failures=opened.failures,
        closes_at=opened.closes_at.isoformat(),
    )


async def _note_incidents(
    connection: AsyncConnection,
    kind: EventKind,
    message: str,
    data: dict[str, Any],
    failures: Sequence[_Failure],
    at: datetime,
    redact: Redactor | None,
) -> None:
    """One entry per incident whose action tripped the breaker, on its latest such action."""
    latest: dict[int, int] = {}
    for failure in failures:
        latest[failure.incident_id] = max(latest.get(failure.incident_id, 0), failure.action_id)
    for incident_id, action_id in sorted(latest.items()):
        entry = TimelineEntry(kind, message, data, action_id=action_id)
        await timeline_repo.append(
            connection, incident_id, [entry], at, redact or heal_logging.redactor()
        )


async def _failures(
    connection: AsyncConnection, action_name: str, target: str | None, since: datetime
) -> list[_Failure]:
    same = and_(
        actions.c.action_name == action_name,
        actions.c.target.is_(None) if target is None else actions.c.target == target,
    )
    failed = select(actions.c.finished_at, actions.c.id, actions.c.incident_id).where(
        same,
        actions.c.status == ActionStatus.FAILURE.value,
        actions.c.failure_type.not_in(_NOT_COUNTED),
        actions.c.finished_at > since,
    )
    ineffective = (
        select(verifications.c.outcome_at, actions.c.id, actions.c.incident_id)
        .select_from(verifications.join(actions, actions.c.id == verifications.c.action_id))
        .where(
            same,
            verifications.c.outcome == "ineffective",
            verifications.c.outcome_at > since,
        )
    )
    rows = (await connection.execute(failed.union_all(ineffective))).all()
    return [_Failure(row[0], row[1], row[2]) for row in rows if row[0] is not None]


async def _open(
    connection: AsyncConnection,
    action_name: str,
    target: str,
    failures: int,
    now: datetime,
    closes_at: datetime,
    tripped_by: list[dict[str, int]],
) -> int:
    values = {
        "action_name": action_name,
        "target": target,
        "failures": failures,
        "opened_at": now,
        "closes_at": closes_at,
        "reset_by": None,
        "reset_at": None,
        "tripped_by": tripped_by,
    }
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(breakers).values(values)
    statement = insert.on_conflict_do_update(
        index_elements=[breakers.c.action_name, breakers.c.target],
        set_={k: insert.excluded[k] for k in values if k not in ("action_name", "target")},
    ).returning(breakers.c.id)
    return int((await connection.execute(statement)).scalar_one())


async def listing(connection: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
    """Every breaker that ever opened, the open ones first, with its state now."""
    rows = (
        await connection.execute(
            select(breakers).order_by(breakers.c.closes_at.desc(), breakers.c.id)
        )
    ).all()
    return [{**row._mapping, "open": row.closes_at > now} for row in rows]


async def reset(
    connection: AsyncConnection,
    breaker_id: int,
    who: str,
    now: datetime,
    redact: Redactor | None = None,
) -> bool:
    """Close the breaker now; failures before now no longer count. False: no such breaker.

    The reset is written on the timelines of the incidents whose actions opened it, and
    logged."""
    stored = (await connection.execute(select(breakers).where(breakers.c.id == breaker_id))).first()
    if stored is None:
        return False
    await connection.execute(
        update(breakers)
        .where(breakers.c.id == breaker_id)
        .values(closes_at=now, reset_by=who, reset_at=now)
    )
    was_open = stored.closes_at > now
    where = f" on {stored.target}" if stored.target else ""
    message = (
        f"circuit breaker #{breaker_id} of {stored.action_name!r}{where} reset by {who}"
        + ("" if was_open else " (it had closed already)")
        + ": new actions there may run again"
    )
    data = {
        "breaker_id": breaker_id,
        "action": stored.action_name,
        "target": stored.target or None,
        "reset_by": who,
        "was_open": was_open,
    }
    tripped = [
        _Failure(now, int(t["action_id"]), int(t["incident_id"])) for t in stored.tripped_by or []
    ]
    await _note_incidents(connection, EventKind.BREAKER_RESET, message, data, tripped, now, redact)
    log.info(
        "circuit breaker reset",
        breaker_id=breaker_id,
        action=stored.action_name,
        target=stored.target or None,
        reset_by=who,
        was_open=was_open,
    )
    return True
