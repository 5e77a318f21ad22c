"""Per-target concurrency: never two remediations of one target at once, across incidents
and across engines sharing one database (as workers do), on every backend."""

from __future__ import annotations

import asyncio

import pytest
from conftest import HealFactory
from governed import FakeTarget, crash, governed, install, messages, row, rows, run_all
from helpers import Clock
from sqlalchemy import text, update

from heal.governors import leases
from heal.store.tables import actions

pytestmark = pytest.mark.usefixtures("backend")

DELAY = "concurrency: {max: 1, policy: delay, recheck: 5}"


async def test_actions_on_one_target_never_overlap_across_incidents_and_engines(
    make_heal: HealFactory, clock: Clock
) -> None:
    first = await make_heal(governed(DELAY), clock=clock)
    second = await make_heal(governed(DELAY), clock=clock)  # another worker, same database
    plugin = FakeTarget()
    install([first, second], plugin)
    report = await first.ingest.ingest([crash(f"checkout-{i}") for i in range(4)])
    assert (report.incidents_opened, report.actions_created) == (4, 4)
    await second.ingest.ingest([crash("cart-0", deployment="cart")])  # another target

    ended = await run_all([first, second], clock)

    assert [r["status"] for r in ended] == ["success"] * 5
    assert plugin.most == {"checkout": 1, "cart": 1}
    assert sorted(plugin.runs) == [1, 2, 3, 4, 5]  # each ran once
    waited = [m for r in ended for m in await messages(first, r["id"]) if "busy" in m]
    assert waited
    assert all("target shop/checkout is busy with action #" in m for m in waited)
    async with first.db.read() as connection:
        assert await leases.held(connection) == []  # every lease given back


async def test_three_workers_ingesting_at_once_never_run_two_on_one_target(
    make_heal: HealFactory, clock: Clock
) -> None:
    """As in production: three workers, each ingesting its own alerts concurrently and
    waking whatever is due; the fake target counts how many runs overlapped."""
    workers = [await make_heal(governed(DELAY), clock=clock) for _ in range(3)]
    plugin = FakeTarget()
    install(workers, plugin)
    batches = [
        [crash(f"checkout-{w}-{i}") for i in range(3)] + [crash(f"cart-{w}", deployment="cart")]
        for w in range(3)
    ]
    reports = await asyncio.gather(
        *(worker.ingest.ingest(batch) for worker, batch in zip(workers, batches, strict=True))
    )
    assert sum(r.actions_created for r in reports) == 12

    ended = await run_all(workers, clock)

    assert [r["status"] for r in ended] == ["success"] * 12
    assert plugin.most == {"checkout": 1, "cart": 1}
    assert sorted(plugin.runs) == list(range(1, 13))  # each ran once
    async with workers[0].db.read() as connection:
        assert await leases.held(connection) == []


async def test_a_higher_max_lets_that_many_run_at_once(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed("concurrency: {max: 2, recheck: 5}"), clock=clock)
    plugin = FakeTarget(run_for=0.05)
    install([heal], plugin)
    await heal.ingest.ingest([crash(f"checkout-{i}") for i in range(5)])
    ended = await run_all([heal], clock)
    assert [r["status"] for r in ended] == ["success"] * 5
    assert plugin.most["checkout"] == 2


async def test_cancel_skips_the_action_while_the_target_is_busy(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed("concurrency: {max: 1, policy: cancel}"), clock=clock)
    plugin = FakeTarget()
    plugin.gate = asyncio.Event()
    install([heal], plugin)
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])

    running = asyncio.create_task(heal.engine.wake(1, 0))
    while not plugin.runs:  # the first holds the target, its step under way
        await asyncio.sleep(0.01)
    await heal.engine.wake(2, 0)
    plugin.gate.set()
    await running

    skipped = await row(heal, 2)
    assert (skipped["status"], skipped["failure_type"]) == ("skipped", None)
    assert (
        "target shop/checkout is busy with action #1 (concurrency policy cancel)"
        in (skipped["message"])
    )
    assert any("not run: target shop/checkout is busy" in m for m in await messages(heal, 2))
    assert (await row(heal, 1))["status"] == "success"
    assert plugin.runs == [1]


async def test_the_end_of_the_holder_wakes_the_next_action_at_once(
    make_heal: HealFactory, clock: Clock, backend: tuple[str, str]
) -> None:
    heal = await make_heal(governed("concurrency: {max: 1, recheck: 600}"), clock=clock)
    plugin = FakeTarget()
    plugin.gate = asyncio.Event()
    install([heal], plugin)
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])

    running = asyncio.create_task(heal.engine.wake(1, 0))
    while not plugin.runs:
        await asyncio.sleep(0.01)
    await heal.engine.wake(2, 0)
    delayed = await row(heal, 2)
    assert delayed["status"] == "received"
    assert (delayed["next_wake_at"] - clock.now).total_seconds() == 600
    plugin.gate.set()
    await running

    woken = await row(heal, 2)
    assert woken["next_wake_at"] == clock.now  # not 600 s later
    if backend[1] == "procrastinate":  # the wake is a job there: it moved too
        async with heal.db.read() as connection:
            jobs = await connection.execute(
                text(
                    "SELECT scheduled_at, args FROM procrastinate_jobs "
                    "WHERE queueing_lock = 'heal-action-2' AND status = 'todo'"
                )
            )
            assert [(j.scheduled_at, j.args["version"]) for j in jobs] == [
                (clock.now, woken["version"])
            ]
    await heal.engine.wake(2, woken["version"])
    assert (await row(heal, 2))["status"] == "success"


async def test_a_lease_whose_action_ended_without_giving_it_back_is_taken_over(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed(DELAY), clock=clock)
    plugin = FakeTarget()
    plugin.gate = asyncio.Event()
    install([heal], plugin)
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    running = asyncio.create_task(heal.engine.wake(1, 0))
    while not plugin.runs:
        await asyncio.sleep(0.01)
    running.cancel()  # heal dies mid-step ...
    with pytest.raises(asyncio.CancelledError):
        await running
    async with heal.db.write() as connection:  # ... and the action is ended by other means
        await connection.execute(
            update(actions)
            .where(actions.c.id == 1)
            .values(status="failure", failure_type="system_abort", next_wake_at=None)
        )
        assert [lease["action_id"] for lease in await leases.held(connection)] == [1]
    plugin.gate.set()

    ended = await run_all([heal], clock)

    assert [r["status"] for r in ended] == ["failure", "success"]
    async with heal.db.read() as connection:
        assert await leases.held(connection) == []


async def test_the_sweeper_gives_back_the_leases_of_ended_actions(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed(DELAY), clock=clock)
    install([heal], FakeTarget(run_for=0))
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    async with heal.db.write() as connection:  # held by #1, which then ends by other means
        assert await leases.acquire(connection, 1, "shop/checkout", 1, clock.now) is None
        assert await leases.acquire(connection, 2, "shop/checkout", 1, clock.now) == 1
        await connection.execute(
            update(actions).where(actions.c.id == 1).values(status="skipped", next_wake_at=None)
        )
    assert await heal.sweep_leases() == 1
    assert await heal.sweep_leases() == 0
    async with heal.db.read() as connection:
        assert await leases.held(connection) == []


async def test_a_target_key_that_renders_empty_fails_the_creation(
    make_heal: HealFactory, clock: Clock
) -> None:
    both = "{{ alert.labels.namespace }}/{{ alert.labels.deployment }}"
    policy = governed(DELAY).replace(both, "{{ alert.labels.deployment }}")
    heal = await make_heal(policy, clock=clock)
    await heal.ingest.ingest([crash("checkout-0", deployment="")])
    [created] = await rows(heal)
    assert (created["status"], created["failure_type"]) == ("failure", "create_failure")
    assert created["message"] == "target_key failed to render: target_key rendered empty"


async def test_a_delayed_action_ends_blocked_once_it_has_waited_longer_than_max_wait(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(
        governed("concurrency: {max: 1, recheck: 20, max_wait: 50}"), clock=clock
    )
    plugin = FakeTarget()
    plugin.gate = asyncio.Event()
    install([heal], plugin)
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    running = asyncio.create_task(heal.engine.wake(1, 0))
    while not plugin.runs:  # the first holds the target, its step under way
        await asyncio.sleep(0.01)

    await heal.engine.wake(2, 0)  # the first delay: the wait is counted from here
    for _ in range(2):  # 40 s in all: not longer than max_wait yet
        clock.advance(20)
        waiting = await row(heal, 2)
        assert waiting["status"] == "received"
        await heal.engine.wake(2, waiting["version"])
    assert (await row(heal, 2))["status"] == "received"
    clock.advance(20)
    await heal.engine.wake(2, (await row(heal, 2))["version"])

    blocked = await row(heal, 2)
    assert (blocked["status"], blocked["failure_type"]) == ("blocked", "blocked")
    assert "target shop/checkout busy for 60 s, longer than max_wait 50 s" in blocked["message"]
    assert any("busy for 60 s, longer than max_wait" in m for m in await messages(heal, 2))
    plugin.gate.set()
    await running
    assert (await row(heal, 1))["status"] == "success"
    assert plugin.runs == [1]  # the blocked one never ran


async def test_max_wait_is_counted_from_the_first_delay_in_the_row_not_from_memory(
    make_heal: HealFactory, clock: Clock
) -> None:
    """Another engine (a restarted worker) counts the wait from the same moment."""
    first = await make_heal(governed("concurrency: {max: 1, max_wait: 60}"), clock=clock)
    second = await make_heal(governed("concurrency: {max: 1, max_wait: 60}"), clock=clock)
    plugin = FakeTarget()
    plugin.gate = asyncio.Event()
    install([first, second], plugin)
    await first.ingest.ingest([crash("checkout-0"), crash("checkout-1")])
    running = asyncio.create_task(first.engine.wake(1, 0))
    while not plugin.runs:
        await asyncio.sleep(0.01)
    await first.engine.wake(2, 0)
    clock.advance(90)

    await second.engine.wake(2, (await row(second, 2))["version"])

    assert (await row(second, 2))["status"] == "blocked"
    plugin.gate.set()
    await running
