"""Change freezes: in their window, new actions need approval or are blocked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import HealFactory
from governed import crash, governed, messages, row
from helpers import Clock

from heal.domain.approvals import week_window
from heal.policy.loader import PolicyError, load_policy_text

pytestmark = pytest.mark.usefixtures("backend")

WEEKEND = "governors:\n  freeze:\n    - {window: 'Fri 18:00-Mon 06:00', mode: approve}\n"


def _freeze(window: str, mode: str, match: str = "{}") -> str:
    return governed(
        "", f"governors:\n  freeze:\n    - {{window: '{window}', mode: {mode}, match: {match}}}\n"
    )


async def test_in_a_weekend_freeze_actions_wait_for_approval(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(governed("", WEEKEND), clock=clock)
    await heal.ingest.ingest([crash("checkout-0")])  # Thursday noon: no freeze
    clock.now = datetime(2026, 1, 3, 9, 0, tzinfo=UTC)  # Saturday
    await heal.ingest.ingest([crash("checkout-1")])
    clock.now = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # Monday 06:00: over
    await heal.ingest.ingest([crash("checkout-2")])

    assert [(await row(heal, i))["status"] for i in (1, 2, 3)] == [
        "received",
        "waiting",
        "received",
    ]
    assert "needs approval: change freeze 'Fri 18:00-Mon 06:00' in force" in (
        await messages(heal, 2)
    )


async def test_a_blocking_freeze_blocks_only_the_alerts_it_matches(
    make_heal: HealFactory, clock: Clock
) -> None:
    heal = await make_heal(
        _freeze("Thu 11:00-Thu 13:00", "block", "{namespace: shop}"), clock=clock
    )
    await heal.ingest.ingest([crash("checkout-0"), crash("web-0", namespace="web")])
    blocked = await row(heal, 1)
    assert (blocked["status"], blocked["message"]) == (
        "blocked",
        "blocked: change freeze 'Thu 11:00-Thu 13:00' in force",
    )
    assert (await row(heal, 2))["status"] == "received"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_freeze_window_is_checked_when_the_policy_loads() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(_freeze("Fri 18:00-Mon", "block"))
    [problem] = info.value.problems
    assert problem.path == "governors.freeze.0.window"
    assert "is not like" in problem.message


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("spec", "moment", "inside"),
    [
        ("Sun 22:00-Mon 02:00", datetime(2026, 1, 4, 23, 0, tzinfo=UTC), True),
        ("Sun 22:00-Mon 02:00", datetime(2026, 1, 5, 1, 59, tzinfo=UTC), True),
        ("Sun 22:00-Mon 02:00", datetime(2026, 1, 5, 2, 0, tzinfo=UTC), False),
        ("Fri 18:00-Mon 06:00", datetime(2026, 1, 2, 17, 59, tzinfo=UTC), False),
        ("Mon-Fri 09:00-18:00", datetime(2026, 1, 2, 10, 0, tzinfo=UTC), True),
        ("Mon-Fri 09:00-18:00", datetime(2026, 1, 3, 10, 0, tzinfo=UTC), False),
    ],
)
def test_windows_across_days_and_within_days(spec: str, moment: datetime, inside: bool) -> None:
    assert week_window(spec).contains(moment) is inside
