"""Gauges read from the database when ``/metrics`` is scraped.

Pending approvals, in-flight actions, the chat outbox, open breakers and held target
leases belong to the database, not to a process: every process (``heal serve``, each
``heal worker``) answers with the same, true numbers, however many there are and whichever
of them did the work. So these are queried on scrape, never counted up and down in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from heal.domain.actions import TERMINAL_STATUSES
from heal.domain.approvals import ApprovalStatus
from heal.observability.logging import get_logger
from heal.store.db import Database
from heal.store.tables import actions, approvals, breakers, notifications, target_leases

log = get_logger("heal.metrics")


@dataclass(frozen=True, slots=True)
class Snapshot:
    pending_approvals: dict[tuple[str, str], int] = field(default_factory=dict)
    in_flight: dict[tuple[str, str, str], int] = field(default_factory=dict)
    outbox_pending: int = 0
    outbox_oldest_seconds: float = 0.0
    breakers_open: dict[str, int] = field(default_factory=dict)
    leases_held: dict[str, int] = field(default_factory=dict)
    database_up: bool = False


class DatabaseGauges(Collector):
    """The last snapshot read from the database, exported as gauges."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    async def refresh(self, db: Database) -> None:
        try:
            async with db.read() as connection:
                self.snapshot = await _read(connection)
        except Exception as exc:  # the scrape still answers; heal_database_up says why
            log.warning("metrics: database unreadable", error=type(exc).__name__)
            self.snapshot = Snapshot()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(_families(Snapshot()))

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return list(_families(self.snapshot))


GAUGES = DatabaseGauges()


async def exposition(db: Database) -> bytes:
    """The Prometheus text of this process, gauges fresh from the database."""
    await GAUGES.refresh(db)
    return generate_latest()


async def _read(connection: AsyncConnection) -> Snapshot:
    pending = await connection.execute(
        select(actions.c.rule, actions.c.action_name, func.count())
        .select_from(approvals.join(actions, actions.c.id == approvals.c.action_id))
        .where(approvals.c.status == ApprovalStatus.PENDING.value)
        .group_by(actions.c.rule, actions.c.action_name)
    )
    in_flight = await connection.execute(
        select(actions.c.rule, actions.c.action_name, actions.c.status, func.count())
        .where(actions.c.status.not_in([s.value for s in TERMINAL_STATUSES]))
        .group_by(actions.c.rule, actions.c.action_name, actions.c.status)
    )
    outbox = (
        await connection.execute(
            select(func.count(), func.min(notifications.c.created_at)).where(
                notifications.c.status == "pending"
            )
        )
    ).one()
    now = datetime.now(UTC)
    open_breakers = await connection.execute(
        select(breakers.c.action_name, func.count())
        .where(breakers.c.closes_at > now)
        .group_by(breakers.c.action_name)
    )
    # A lease whose action has ended is still held until the next one takes it over or the
    # sweeper gives it back: it still keeps others off its target.
    leases_held = await connection.execute(
        select(func.coalesce(actions.c.action_name, ""), func.count())
        .select_from(target_leases.outerjoin(actions, actions.c.id == target_leases.c.action_id))
        .group_by(actions.c.action_name)
    )
    oldest: datetime | None = outbox[1]
    if oldest is not None and oldest.tzinfo is None:  # SQLite's aggregate loses the type
        oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=UTC)
    return Snapshot(
        pending_approvals={(r[0], r[1]): r[2] for r in pending},
        in_flight={(r[0], r[1], r[2]): r[3] for r in in_flight},
        outbox_pending=outbox[0],
        outbox_oldest_seconds=(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0),
        breakers_open={r[0]: r[1] for r in open_breakers},
        leases_held={r[0]: r[1] for r in leases_held},
        database_up=True,
    )


def _families(snapshot: Snapshot) -> Iterator[GaugeMetricFamily]:
    pending = GaugeMetricFamily(
        "heal_approvals_pending",
        "Approvals waiting for signatures (from the database)",
        labels=["rule", "action"],
    )
    for (rule, action), count in sorted(snapshot.pending_approvals.items()):
        pending.add_metric([rule, action], count)
    yield pending
    in_flight = GaugeMetricFamily(
        "heal_actions_in_flight",
        "Actions not yet finished, by status (from the database)",
        labels=["rule", "action", "status"],
    )
    for (rule, action, status), count in sorted(snapshot.in_flight.items()):
        in_flight.add_metric([rule, action, status], count)
    yield in_flight
    yield GaugeMetricFamily(
        "heal_outbox_pending",
        "Chat notifications not yet delivered (from the database)",
        value=snapshot.outbox_pending,
    )
    yield GaugeMetricFamily(
        "heal_outbox_oldest_pending_seconds",
        "Age of the oldest chat notification not yet delivered (0 when none)",
        value=snapshot.outbox_oldest_seconds,
    )
    breakers_open = GaugeMetricFamily(
        "heal_breakers_open",
        "Circuit breakers open now, blocking their action on a target (from the database)",
        labels=["action"],
    )
    for action, count in sorted(snapshot.breakers_open.items()):
        breakers_open.add_metric([action], count)
    yield breakers_open
    leases = GaugeMetricFamily(
        "heal_target_leases_held",
        "Target leases held (actions at work on a target under concurrency:), by the "
        "holder's action (from the database)",
        labels=["action"],
    )
    for action, count in sorted(snapshot.leases_held.items()):
        leases.add_metric([action], count)
    yield leases
    yield GaugeMetricFamily(
        "heal_database_up",
        "1 when the last scrape could read the database",
        value=1 if snapshot.database_up else 0,
    )


def metrics_app(db: Database) -> Starlette:
    """``/metrics`` alone, for a process that serves no API (``heal worker``)."""

    async def scrape(_request: Request) -> Response:
        return Response(await exposition(db), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", scrape)])


class _QuietServer(uvicorn.Server):
    """uvicorn beside a process that handles SIGINT/SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving_metrics(db: Database, sock: socket.socket | None) -> AsyncIterator[None]:
    """Serve ``/metrics`` on ``sock`` (none: nothing) for as long as the block runs."""
    if sock is None:
        yield
        return
    config = uvicorn.Config(metrics_app(db), log_level="warning", lifespan="off")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="heal-metrics")
    try:
        yield
    finally:
        server.should_exit = True
        await task


REGISTRY.register(GAUGES)  # last: describe() needs the module's functions
