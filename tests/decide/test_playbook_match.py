"""The playbook tier: exact signatures first, then similar ones by their lower bound;
only approved playbooks of the catalogue's actions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from playbook_support import WHEN, add, decision_input, playbook_row, policy

from heal.decide.learning import record_rejection
from heal.decide.playbooks import PlaybookTier
from heal.domain.decisions import TierName
from heal.domain.playbooks import wilson_lower_bound
from heal.store import migrate, playbooks_repo
from heal.store.db import Database

CHECKOUT = {"alertname": "CheckoutDown", "namespace": "shop", "deployment": "checkout"}
LATER = time.monotonic() + 3600


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Database]:
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    db = Database(url)
    await migrate.upgrade(db)
    yield db
    await db.dispose()


async def test_the_exact_signature_wins_over_a_better_similar_one(database: Database) -> None:
    exact = await add(database, playbook_row(CHECKOUT, runs=2, successes=1))
    await add(
        database,
        playbook_row({**CHECKOUT, "tier": "payments"}, action="restart", runs=50, successes=50),
    )
    pod = {**CHECKOUT, "pod": "checkout-7d9f8b6c4-x2x9z", "instance": "10.1.2.3:8080"}
    answer = await PlaybookTier(database).propose(decision_input(policy(), pod), LATER)
    assert answer.proposal is not None
    assert answer.proposal.tier is TierName.PLAYBOOK
    assert answer.proposal.action == "open-ticket"
    assert answer.proposal.confidence == 0.0
    assert answer.proposal.evidence == {
        "playbook_id": exact,
        "similarity": 1.0,
        "lower_bound": wilson_lower_bound(1, 2),
        "runs": 2,
        "verified_successes": 1,
    }


async def test_similar_playbooks_rank_by_their_lower_bound(database: Database) -> None:
    await add(database, playbook_row({**CHECKOUT, "tier": "a"}, runs=3, successes=3))
    proven = await add(
        database,
        playbook_row({**CHECKOUT, "tier": "b"}, action="restart", runs=40, successes=38),
    )
    await add(database, playbook_row({**CHECKOUT, "tier": "c"}, runs=10, successes=2))
    answer = await PlaybookTier(database).propose(
        decision_input(policy(), {**CHECKOUT, "tier": "z"}), LATER
    )
    assert answer.proposal is not None
    assert answer.proposal.evidence["playbook_id"] == proven
    assert 0.85 <= answer.proposal.evidence["similarity"] < 1.0
    assert answer.proposal.params == {}


async def test_not_alike_enough_is_no_proposal(database: Database) -> None:
    await add(database, playbook_row({**CHECKOUT, "deployment": "cart", "cluster": "eu"}))
    answer = await PlaybookTier(database).propose(
        decision_input(policy(), {**CHECKOUT, "cluster": "us"}, summary="something else"),
        LATER,
    )
    assert answer.proposal is None
    assert answer.reason is not None
    assert "85%" in answer.reason


@pytest.mark.parametrize("status", ["draft", "deprecated"])
async def test_only_approved_playbooks_are_proposed(database: Database, status: str) -> None:
    await add(database, playbook_row(CHECKOUT, status=status))
    answer = await PlaybookTier(database).propose(decision_input(policy(), CHECKOUT), LATER)
    assert answer.proposal is None


async def test_only_actions_of_the_catalogue_are_proposed(database: Database) -> None:
    await add(database, playbook_row(CHECKOUT, action="restart", runs=9, successes=9))
    kept = await add(database, playbook_row({**CHECKOUT, "tier": "x"}, runs=1, successes=1))
    answer = await PlaybookTier(database).propose(
        decision_input(policy(), CHECKOUT, catalogue=("open-ticket",)), LATER
    )
    assert answer.proposal is not None
    assert answer.proposal.evidence["playbook_id"] == kept
    nothing = await PlaybookTier(database).propose(
        decision_input(policy(), {**CHECKOUT, "alertname": "Other"}, catalogue=("restart",)),
        LATER,
    )
    assert nothing.proposal is None


async def test_a_disabled_tier_says_so(database: Database) -> None:
    await add(database, playbook_row(CHECKOUT))
    disabled = policy("decide:\n  playbooks: {enabled: false}\n")
    answer = await PlaybookTier(database).propose(decision_input(disabled, CHECKOUT), LATER)
    assert answer.proposal is None
    assert answer.reason is not None
    assert "disabled" in answer.reason


async def test_the_same_tier_sees_every_change_of_the_rows(database: Database) -> None:
    tier = PlaybookTier(database)
    first = await add(database, playbook_row(CHECKOUT, runs=5, successes=5))
    request = decision_input(policy(), CHECKOUT)
    answer = await tier.propose(request, LATER)
    assert answer.proposal is not None
    assert answer.proposal.evidence["playbook_id"] == first
    async with database.write() as connection:
        await playbooks_repo.set_values(
            connection, first, {"status": "deprecated", "updated_at": WHEN}
        )
    assert (await tier.propose(request, LATER)).proposal is None
    second = await add(database, playbook_row(CHECKOUT, action="restart", runs=2, successes=2))
    answer = await tier.propose(request, LATER)
    assert answer.proposal is not None
    assert answer.proposal.evidence["playbook_id"] == second
    async with database.write() as connection:
        await record_rejection(connection, second, WHEN)
    answer = await tier.propose(request, LATER)
    assert answer.proposal is not None
    assert answer.proposal.evidence["lower_bound"] == wilson_lower_bound(2, 3)
