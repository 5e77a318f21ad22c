"""The governors on /metrics: what they decided (counters of this process) and the open
breakers and held leases (gauges read from the database on each scrape)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from conftest import HealFactory
from governed import FakeTarget, crash, governed, install, row, run_all
from helpers import AUTH, Clock
from prometheus_client.parser import text_string_to_metric_families

from heal.api.app import create_app
from heal.app import Heal
from heal.engine.engine import utcnow

pytestmark = pytest.mark.usefixtures("backend")


class Scraper:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The samples of one series, by their labels."""
        text = (await self.client.get("/metrics")).text
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }

    async def value(self, name: str, **labels: str) -> float:
        return (await self.samples(name)).get(tuple(sorted(labels.items())), 0.0)

    async def decisions(self, governor: str, outcome: str) -> float:
        return await self.value("heal_governor_decisions_total", governor=governor, outcome=outcome)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Heal], tuple[Scraper, httpx.AsyncClient]]]:
    """/metrics (and the API) of a heal, as a scraper and an operator reach them."""
    clients: list[httpx.AsyncClient] = []

    def open_(heal: Heal) -> tuple[Scraper, httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False))
        client = httpx.AsyncClient(transport=transport, base_url="http://heal", headers=AUTH)
        clients.append(client)
        return Scraper(client), client

    yield open_
    for client in clients:
        await client.aclose()


Serve = Callable[[Heal], tuple[Scraper, httpx.AsyncClient]]


async def _hold_the_target(heal: Heal, plugin: FakeTarget) -> asyncio.Task[None]:
    """Action #1 starts and holds shop/checkout until ``plugin.gate`` is set."""
    plugin.gate = asyncio.Event()
    install([heal], plugin)
    running = asyncio.create_task(heal.engine.wake(1, 0))
    while not plugin.runs:
        await asyncio.sleep(0.01)
    return running


async def test_an_opened_breaker_is_counted_gauged_and_gone_from_the_gauge_once_reset(
    make_heal: HealFactory, clock: Clock, serve: Serve
) -> None:
    clock.now = utcnow()  # the gauge judges "open" by the real clock, as a scrape does
    heal = await make_heal(governed("breaker: {failures: 2, cooldown: 1800}"), clock=clock)
    metrics, http = serve(heal)
    plugin = FakeTarget(run_for=0)
    plugin.fail = True
    install([heal], plugin)
    opened = await metrics.value("heal_breakers_opened_total", action="restart")
    blocked = await metrics.decisions("breaker", "blocked")
    assert await metrics.samples("heal_breakers_open") == {}

    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    await run_all([heal], clock)
    await heal.ingest.ingest([crash("checkout-2")])

    assert (await row(heal, 3))["status"] == "blocked"
    assert await metrics.value("heal_breakers_opened_total", action="restart") == opened + 1
    assert await metrics.decisions("breaker", "blocked") == blocked + 1
    assert await metrics.samples("heal_breakers_open") == {(("action", "restart"),): 1}

    assert (await http.post("/api/v1/breakers/1/reset")).status_code == 200
    assert await metrics.samples("heal_breakers_open") == {}


async def test_a_delay_counts_once_and_the_held_lease_is_gauged_until_given_back(
    make_heal: HealFactory, clock: Clock, serve: Serve
) -> None:
    heal = await make_heal(governed("concurrency: {max: 1, recheck: 5}"), clock=clock)
    metrics, _ = serve(heal)
    plugin = FakeTarget()
    delayed = await metrics.decisions("concurrency", "delayed")
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    running = await _hold_the_target(heal, plugin)

    await heal.engine.wake(2, 0)
    clock.advance(5)
    await heal.engine.wake(2, (await row(heal, 2))["version"])  # a recheck: still busy

    assert await metrics.decisions("concurrency", "delayed") == delayed + 1
    assert await metrics.samples("heal_target_leases_held") == {(("action", "restart"),): 1}
    plugin.gate.set()
    await running
    await run_all([heal], clock)
    assert await metrics.samples("heal_target_leases_held") == {}


async def test_a_cancel_counts_as_cancelled(
    make_heal: HealFactory, clock: Clock, serve: Serve
) -> None:
    heal = await make_heal(governed("concurrency: {max: 1, policy: cancel}"), clock=clock)
    metrics, _ = serve(heal)
    plugin = FakeTarget()
    cancelled = await metrics.decisions("concurrency", "cancelled")
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    running = await _hold_the_target(heal, plugin)

    await heal.engine.wake(2, 0)

    assert (await row(heal, 2))["status"] == "skipped"
    assert await metrics.decisions("concurrency", "cancelled") == cancelled + 1
    plugin.gate.set()
    await running


async def test_a_wait_past_max_wait_counts_as_blocked(
    make_heal: HealFactory, clock: Clock, serve: Serve
) -> None:
    heal = await make_heal(
        governed("concurrency: {max: 1, recheck: 30, max_wait: 20}"), clock=clock
    )
    metrics, _ = serve(heal)
    plugin = FakeTarget()
    blocked = await metrics.decisions("concurrency", "blocked")
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    running = await _hold_the_target(heal, plugin)

    await heal.engine.wake(2, 0)
    clock.advance(30)
    await heal.engine.wake(2, (await row(heal, 2))["version"])

    assert (await row(heal, 2))["status"] == "blocked"
    assert await metrics.decisions("concurrency", "blocked") == blocked + 1
    plugin.gate.set()
    await running


@pytest.mark.parametrize(
    ("governors", "extra", "governor", "outcome", "status"),
    [
        ("limits: [{max: 1, per: 3600}]", "", "limit", "approval", "waiting"),
        ("limits: [{max: 1, per: 3600, over: block}]", "", "limit", "blocked", "blocked"),
        ("", "governors: {budget: {max: 1, over: block}}\n", "budget", "blocked", "blocked"),
        ("", "governors: {budget: {max: 1}}\n", "budget", "approval", "waiting"),
    ],
)
async def test_limits_and_the_budget_count_what_they_decided(
    make_heal: HealFactory,
    clock: Clock,
    serve: Serve,
    governors: str,
    extra: str,
    governor: str,
    outcome: str,
    status: str,
) -> None:
    heal = await make_heal(governed(governors, extra), clock=clock)
    metrics, _ = serve(heal)
    before = await metrics.decisions(governor, outcome)

    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])

    assert [(await row(heal, i))["status"] for i in (1, 2)] == ["received", status]
    assert await metrics.decisions(governor, outcome) == before + 1


async def test_a_freeze_and_a_block_count_only_the_governor_that_decided(
    make_heal: HealFactory, clock: Clock, serve: Serve
) -> None:
    """A freeze asks for approval, the rate limit blocks: the block wins, and only the
    limit's decision is counted."""
    freeze = 'governors: {freeze: [{window: "Mon-Sun 00:00-23:59", mode: approve}]}\n'
    heal = await make_heal(
        governed("limits: [{max: 1, per: 3600, over: block}]", freeze), clock=clock
    )
    metrics, _ = serve(heal)
    frozen = await metrics.decisions("freeze", "approval")
    limited = await metrics.decisions("limit", "blocked")

    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])

    assert [(await row(heal, i))["status"] for i in (1, 2)] == ["waiting", "blocked"]
    assert await metrics.decisions("freeze", "approval") == frozen + 1  # #1's
    assert await metrics.decisions("limit", "blocked") == limited + 1
