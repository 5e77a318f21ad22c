"""Rate limits per action and target, and the global budget: counted from the action rows,
past them an action waits for approval or is blocked, with the reason on the timeline;
concurrent ingests never get past a limit together."""

from __future__ import annotations

import asyncio

import pytest
from conftest import HealFactory
from governed import FakeTarget, crash, governed, install, messages, row, rows, run_all
from helpers import Clock
from sqlalchemy import select

from heal.store.tables import approvals

pytestmark = pytest.mark.usefixtures("backend")


async def _statuses(heal: object) -> list[str]:
    return [r["status"] for r in await rows(heal)]  # type: ignore[arg-type]


async def test_past_the_rate_limit_an_action_waits_for_approval(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed("limits: [{max: 2, per: 3600}]"), clock=clock)
    await heal.ingest.ingest([crash(f"checkout-{i}") for i in range(3)])
    await heal.ingest.ingest([crash("cart-0", deployment="cart")])  # another target

    assert await _statuses(heal) == ["received", "received", "waiting", "received"]
    said = await messages(heal, 3)
    reason = "rate limit of 'restart' on shop/checkout reached: 2 in the last 3600 s (max 2)"
    assert f"needs approval: {reason}" in said
    assert any(m.startswith("approval #1 requested") for m in said)
    async with heal.db.read() as connection:
        pending = (await connection.execute(select(approvals.c.action_id))).scalars().all()
    assert list(pending) == [3]


async def test_past_the_rate_limit_an_action_is_blocked_when_over_says_block(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed("limits: [{max: 1, per: 600, over: block}]"), clock=clock)
    await heal.ingest.ingest([crash("checkout-0"), crash("checkout-1")])

    blocked = await row(heal, 2)
    assert (blocked["status"], blocked["failure_type"]) == ("blocked", "blocked")
    assert blocked["message"] == (
        "blocked: rate limit of 'restart' on shop/checkout reached: 1 in the last 600 s (max 1)"
    )
    assert "action not run: " + blocked["message"] in await messages(heal, 2)


async def test_the_window_moves_on_and_counts_started_actions(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed("limits: [{max: 1, per: 600, over: block}]"), clock=clock)
    install([heal], FakeTarget(run_for=0))
    await heal.ingest.ingest([crash("checkout-0")])
    await run_all([heal], clock)  # started and ended at 12:00

    clock.advance(599)
    await heal.ingest.ingest([crash("checkout-1")])
    clock.advance(2)  # the first started 601 s ago: out of the window
    await heal.ingest.ingest([crash("checkout-2")])

    assert await _statuses(heal) == ["success", "blocked", "received"]


async def test_the_global_budget_counts_every_action_and_asks_for_approval(
    make_heal: HealFactory, clock: Clock
) -> None:
    policy = governed("", "governors:\n  budget: {max: 3, per: 3600}\n")
    heal = await make_heal(policy, clock=clock)
    await heal.ingest.ingest([crash("checkout-0"), crash("cart-0", deployment="cart")])
    await heal.ingest.ingest([crash("cart-1", deployment="cart"), crash("web-0", deployment="web")])

    assert await _statuses(heal) == ["received", "received", "received", "waiting"]
    assert "needs approval: global budget reached: 3 actions in the last 3600 s (max 3)" in (
        await messages(heal, 4)
    )


async def test_the_global_budget_blocks_when_over_says_block(
    make_heal: HealFactory, clock: Clock
) -> None:
    policy = governed("", "governors:\n  budget: {max: 1, per: 60, over: block}\n")
    heal = await make_heal(policy, clock=clock)
    await heal.ingest.ingest([crash("checkout-0"), crash("cart-0", deployment="cart")])
    assert await _statuses(heal) == ["received", "blocked"]
    assert (await row(heal, 2))["message"] == (
        "blocked: global budget reached: 1 actions in the last 60 s (max 1)"
    )


async def test_concurrent_ingests_never_get_past_a_limit_together(
    make_heal: HealFactory, clock: Clock
) -> None:
    first = await make_heal(governed("limits: [{max: 3, per: 3600, over: block}]"), clock=clock)
    second = await make_heal(governed("limits: [{max: 3, per: 3600, over: block}]"), clock=clock)
    await asyncio.gather(
        *((first if i % 2 else second).ingest.ingest([crash(f"checkout-{i}")]) for i in range(8))
    )
    statuses = sorted(await _statuses(first))
    assert statuses == ["blocked"] * 5 + ["received"] * 3
