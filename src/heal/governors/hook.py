"""The governors in the engine: the start guard (a lease on the target before the first
step) and the transition hook (the lease given back, and the breaker opened, in the commit
that ends the action)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.actions import ActionStatus
from heal.domain.redaction import Redactor
from heal.engine.interfaces import Hold, WakeScheduler
from heal.engine.machine import ActionState
from heal.governors import breakers, leases
from heal.observability import metrics
from heal.policy.models import ActionBase
from heal.store.locks import serialise
from heal.store.tables import actions


class TargetGuard:
    """Never more than ``concurrency.max`` actions on one target at once."""

    def guards(self, config: ActionBase) -> bool:
        return config.concurrency is not None

    async def admit(
        self, connection: AsyncConnection, action_id: int, config: ActionBase, now: datetime
    ) -> Hold | None:
        concurrency = config.concurrency
        if concurrency is None:
            return None
        row = (
            await connection.execute(
                select(actions.c.action_name, actions.c.target, actions.c.delayed_at).where(
                    actions.c.id == action_id
                )
            )
        ).one()
        key = leases.lease_key(row.action_name, row.target)
        holder = await leases.acquire(connection, action_id, key, concurrency.max, now)
        if holder is None:
            return None
        busy = f"target {key} is busy with action #{holder}"
        if concurrency.policy == "cancel":
            metrics.GOVERNOR_DECISIONS.labels("concurrency", "cancelled").inc()
            return Hold(f"not run: {busy} (concurrency policy cancel)")
        waited = await _waited(connection, action_id, row.delayed_at, now)
        if row.delayed_at is None:
            metrics.GOVERNOR_DECISIONS.labels("concurrency", "delayed").inc()
        if waited > concurrency.max_wait:
            metrics.GOVERNOR_DECISIONS.labels("concurrency", "blocked").inc()
            return Hold(
                f"not run: target {key} busy for {waited} s, longer than max_wait "
                f"{concurrency.max_wait} s (held by action #{holder})",
                status=ActionStatus.BLOCKED.value,
            )
        return Hold(
            f"waiting: {busy} (concurrency policy delay)",
            until=now + timedelta(seconds=concurrency.recheck),
        )


async def _waited(
    connection: AsyncConnection, action_id: int, delayed_at: datetime | None, now: datetime
) -> int:
    """Whole seconds since the action first found its target busy; the first delay is
    recorded in the row (in this, the guard's own commit), so restarts and other workers
    count from the same moment."""
    if delayed_at is None:
        await connection.execute(
            update(actions)
            .where(actions.c.id == action_id, actions.c.delayed_at.is_(None))
            .values(delayed_at=now)
        )
        return 0
    return int((now - delayed_at).total_seconds())


class GovernorHook:
    """In the commit that ends an action: its leases go, and the next action waiting for
    the target is woken at once; a failure may open the action's breaker."""

    def __init__(self, scheduler: WakeScheduler, redact: Redactor | None = None) -> None:
        self.scheduler = scheduler
        self.redact = redact

    async def on_transition(
        self,
        connection: AsyncConnection,
        before: dict[str, Any],
        after: ActionState,
        now: datetime,
    ) -> None:
        if not after.status.is_terminal:
            return
        config = after.config
        if config.concurrency is not None:
            for key in await leases.release(connection, after.id):
                await self._wake_next(connection, before["action_name"], key, now)
        if config.breaker is not None and after.status is ActionStatus.FAILURE:
            target = before.get("target")
            # Two failures committing at once must not each count only itself (READ
            # COMMITTED): the second counts once the first has committed.
            await serialise(connection, f"breaker:{before['action_name']}:{target}")
            await breakers.evaluate(
                connection, before["action_name"], target, config.breaker, now, self.redact
            )

    async def _wake_next(
        self, connection: AsyncConnection, action_name: str, key: str, now: datetime
    ) -> None:
        """The oldest action delayed for the freed target looks again now, not at its next
        recheck (the recheck stays the backstop)."""
        same = (
            actions.c.target == key
            if not key.startswith("action:")
            else (actions.c.target.is_(None)) & (actions.c.action_name == action_name)
        )
        waiting = (
            await connection.execute(
                select(actions.c.id, actions.c.version)
                .where(
                    same,
                    actions.c.status == ActionStatus.RECEIVED.value,
                    actions.c.next_wake_at > now,
                )
                .order_by(actions.c.created_at, actions.c.id)
                .limit(1)
            )
        ).first()
        if waiting is None:
            return
        await connection.execute(
            update(actions)
            .where(actions.c.id == waiting.id, actions.c.version == waiting.version)
            .values(next_poll_at=now, next_wake_at=now)
        )
        await self.scheduler.schedule(connection, waiting.id, waiting.version, now)
