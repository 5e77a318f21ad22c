"""The closed loop teaches the playbook tier: a verified fix becomes an approved playbook
that the tier proposes for the same symptoms on another pod."""

from __future__ import annotations

import time

import pytest
from conftest import HealFactory
from helpers import Clock
from playbook_support import decision_input
from verify_support import QUIET, fire_and_succeed, resolve, verify_policy, watch_of

from heal.decide.knowledge import KnowledgeBase
from heal.decide.playbooks import PlaybookTier
from heal.demo.itsm import FakeITSM
from heal.store import playbooks_repo

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
POD = {"pod": "checkout-7d9f8b6c4-x2x9z", "instance": "10.0.0.7:8080"}


async def test_a_verified_fix_is_learned_approved_and_proposed_again(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await make_heal(verify_policy(itsm[1]), clock=clock)
    heal.verification.clock = heal.approvals.clock = heal.learning.clock = clock
    await fire_and_succeed(heal, clock, **POD)
    assert await heal.learning.sweep() == 0  # pending: nothing known yet
    clock.advance(60)
    await resolve(heal, **POD)
    clock.advance(QUIET)
    assert await heal.verification.sweep() == 1
    assert (await watch_of(heal))["outcome"] == "verified"

    assert await heal.learning.sweep() == 1
    async with heal.db.read() as connection:
        (playbook,) = await playbooks_repo.page(connection)
    assert playbook["status"] == "approved"  # verified: effectiveness 5
    assert (playbook["runs"], playbook["verified_successes"]) == (1, 1)
    assert playbook["mttr_seconds"] is not None
    # ... and the knowledge base remembers it, for the LLM's prompt and `heal kb search`.
    (hit,) = await KnowledgeBase(heal.db).search("CheckoutDown checkout", 5)
    assert (hit.kind, hit.ref) == ("remediation", f"incident {playbook['learned_from']}")
    assert "open-ticket" in hit.text
    assert "verified, effectiveness 5" in hit.text

    elsewhere = {
        "alertname": "CheckoutDown",
        "severity": "critical",
        "service": "checkout",
        "pod": "checkout-5b6c7d8f9-qwz7k",
        "instance": "10.0.0.9:8080",
    }
    request = decision_input(heal.ruleset.policy, elsewhere, catalogue=("open-ticket",))
    answer = await PlaybookTier(heal.db).propose(request, time.monotonic() + 10)
    assert answer.proposal is not None
    assert answer.proposal.action == "open-ticket"
    assert answer.proposal.evidence["playbook_id"] == playbook["id"]
    assert answer.proposal.evidence["similarity"] == 1.0
