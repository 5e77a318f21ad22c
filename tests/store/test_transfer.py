"""Moving an embedded (SQLite) installation to PostgreSQL keeps everything, and work goes on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import HealFactory
from helpers import SERVICE_TOKENS, Clock, alert, drive, policy_text
from sqlalchemy import Table, select

from heal.app import Heal
from heal.decide.knowledge import KnowledgeBase, RemediationSummary, record_remediation
from heal.demo.itsm import FakeITSM
from heal.domain.approvals import Role, Signer
from heal.policy import load_policy_text
from heal.settings import Settings, hash_token
from heal.store import (
    actions_repo,
    approvals_repo,
    decisions_repo,
    incidents_repo,
    notifications_repo,
    silences_repo,
    transfer,
    users_repo,
)
from heal.store.db import Database
from heal.store.tables import metadata
from heal.verify import ratings

APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 2, approver_groups: [sre], expires_in: 600}
"""

VERIFIED = "    skip_delay: 0\n    verify: {within: 300, quiet_for: 60}\n"
# Per service: one ticket at a time, and a breaker that opens at the first failure.
GOVERNED = """    type: http
    target_key: "{{ alert.labels.service }}"
    concurrency: {max: 1}
    breaker: {failures: 1, within: 3600, cooldown: 3600}
"""

pytestmark = pytest.mark.postgres


@pytest.fixture
def backend(sqlite_url: str) -> tuple[str, str]:
    return sqlite_url, "embedded"


async def test_migrate_to_postgres_copies_all_and_in_flight_actions_finish_there(
    make_heal: HealFactory,
    itsm: tuple[FakeITSM, str],
    clock: Clock,
    fresh_postgres_url: str,
) -> None:
    fake, url = itsm
    source = await make_heal(policy_text(url), clock=clock)
    await source.ingest.ingest([alert(service=f"s{i}") for i in range(3)])
    await drive(source, clock, 1)  # one finished; two still in flight (never woken)
    await source.engine.wake(2, 0)  # one mid-way: ticket created, polling
    before = await transfer.count_rows(source.db)

    seen: list[tuple[str, int]] = []
    target_db = Database(fresh_postgres_url)
    try:
        copied = await transfer.copy_database(
            source.db, target_db, lambda t, n: seen.append((t, n))
        )
        assert copied == before
        assert await transfer.count_rows(target_db) == before
        timeline_rows = next(count.rows for count in before if count.name == "timeline")
        assert ("timeline", timeline_rows) in seen
        with pytest.raises(transfer.TargetNotEmpty, match="incidents"):
            await transfer.copy_database(source.db, target_db)
    finally:
        await target_db.dispose()

    target = Heal.build(
        Settings(
            database_url=fresh_postgres_url, runtime="procrastinate", api_tokens=SERVICE_TOKENS
        ),
        load_policy_text(policy_text(url)),
    )
    target.engine.clock = target.ingest.clock = clock
    await target.start(worker=False)
    try:
        assert await target.schedule_all_wakes() == 2
        for action_id in (2, 3):
            row = await drive(target, clock, action_id)
            assert row["status"] == "success"
        assert fake.tickets_created == 3  # action 2 kept its ticket across the move
        report = await target.ingest.ingest([alert(service="after-move")])
        async with target.db.read() as connection:
            assert report.incident_ids == [4]  # ids continue past the copied ones
            action = await actions_repo.load(connection, 4)
            incident = await incidents_repo.get(connection, 1)
        assert action is not None
        assert incident is not None
        assert incident["title"] == "CheckoutDown (service=s0)"
    finally:
        await target.stop()


async def _fill_every_table(heal: Heal, clock: Clock, fake: FakeITSM) -> None:
    """Rows in every table, made the way heal makes them."""
    report = await heal.ingest.ingest([alert(service="needs-approval")])
    async with heal.db.write() as connection:
        alice = await users_repo.add(connection, "alice", "approver", ["sre"], clock.now)
        await users_repo.add_token(connection, alice, hash_token("alice-token"), "cli", clock.now)
        await users_repo.link_chat(connection, alice, "telegram", "1001")
        await silences_repo.add(
            connection,
            {
                "matchers": {"service": "noisy"},
                "starts_at": clock.now,
                "ends_at": clock.now + timedelta(hours=1),
                "created_by": "alice",
                "comment": "maintenance",
                "created_at": clock.now,
            },
        )
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
        approval = await approvals_repo.for_action(connection, action["id"])
        assert approval is not None
        await notifications_repo.record_card(
            connection,
            incident_id=report.incident_ids[0],
            approval_id=approval["id"],
            provider="telegram",
            chat_id="-100",
            message_id="7",
            thread_id=None,
            now=clock.now,
        )
    signer = Signer("alice", Role.parse("approver"), frozenset({"sre"}))
    await heal.approvals.sign(approval["id"], signer, approve=True, comment="one of two")
    async with heal.db.write() as connection:
        await users_repo.add(connection, "carol", "approver", ["sre"], clock.now)
    carol = Signer("carol", Role.parse("approver"), frozenset({"sre"}))
    await heal.approvals.sign(approval["id"], carol, approve=True, comment="two of two")
    done = await drive(heal, clock, action["id"])  # succeeds: its verification is watched
    assert done["status"] == "success"
    await ratings.rate(
        heal.db, done["incident_id"], "alice", 4, "fixed", clock.now, heal.approvals.redact
    )
    heal.learning.clock = clock
    assert await heal.learning.sweep() == 1  # a draft playbook, and what it learned from
    fake.fail_create_times = fake.create_calls + 99  # the ITSM refuses from now on
    failed = await _approved(heal, clock, "flaky", signer, carol)
    assert (await drive(heal, clock, failed))["status"] == "failure"  # its breaker opens
    fake.fail_create_times = 0
    busy = await _approved(heal, clock, "busy", signer, carol)
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, busy)
    assert row is not None
    await heal.engine.wake(busy, row["version"])  # a ticket open, polled: the target is leased
    async with heal.db.write() as connection:  # a decision, as ingest opens one
        decision = decisions_repo.new_row(
            row["incident_id"], "decider", row["alert_id"], clock.now, 30
        )
        await decisions_repo.open_many(connection, [decision])
    async with heal.db.write() as connection:
        summary = RemediationSummary(
            done["incident_id"], "CheckoutDown", "open-ticket", {"service": "needs-approval"}
        )
        await record_remediation(connection, summary, clock.now)


async def _approved(heal: Heal, clock: Clock, service: str, *signers: Signer) -> int:
    """A new incident's action, approved by ``signers``: its id."""
    report = await heal.ingest.ingest([alert(service=service)])
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
        approval = await approvals_repo.for_action(connection, action["id"])
    assert approval is not None
    for signer in signers:
        await heal.approvals.sign(approval["id"], signer, approve=True)
    return int(action["id"])


async def _all_rows(database: Database, table: Table) -> list[dict[str, Any]]:
    async with database.read() as connection:
        result = await connection.execute(select(table).order_by(*table.primary_key.columns))
        return [dict(row._mapping) for row in result]


async def test_migrate_to_postgres_copies_every_row_of_every_table(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock, fresh_postgres_url: str
) -> None:
    fake, url = itsm
    governed = (
        policy_text(url)
        .replace(
            "    skip_delay: 0\n", "    skip_delay: 0\n    verify: {within: 300, quiet_for: 60}\n"
        )
        .replace("    type: http\n", GOVERNED, 1)
    )
    source = await make_heal(governed + APPROVAL, clock=clock)
    source.approvals.clock = clock
    await _fill_every_table(source, clock, fake)
    empty = [c.name for c in await transfer.count_rows(source.db) if c.rows == 0]
    assert empty == []  # a new table needs rows in _fill_every_table
    assert {c.name for c in await transfer.count_rows(source.db)} == set(metadata.tables)

    target_db = Database(fresh_postgres_url)
    try:
        copied = await transfer.copy_database(source.db, target_db)
        assert copied == await transfer.count_rows(source.db)
        for table in metadata.sorted_tables:
            assert await _all_rows(target_db, table) == await _all_rows(source.db, table), table
        async with target_db.write() as connection:
            next_user = await users_repo.add(connection, "bob", "viewer", [], clock.now)
        assert next_user == 3  # the id sequence moved past the copied ids (alice, carol)
        (found,) = await KnowledgeBase(target_db).search("checkoutdown ticket", 5)
        # The search index is rebuilt there too.
        assert found.title == "CheckoutDown in needs-approval: open-ticket"
    finally:
        await target_db.dispose()


async def test_force_replaces_what_the_target_holds(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock, fresh_postgres_url: str
) -> None:
    _, url = itsm
    source = await make_heal(policy_text(url), clock=clock)
    await source.ingest.ingest([alert(service="a"), alert(service="b")])
    target_db = Database(fresh_postgres_url)
    try:
        await transfer.copy_database(source.db, target_db)
        async with target_db.write() as connection:
            await users_repo.add(connection, "only-on-the-target", "viewer", [], clock.now)
        with pytest.raises(transfer.TargetNotEmpty, match=r"users \(1\)"):
            await transfer.copy_database(source.db, target_db)
        await transfer.copy_database(source.db, target_db, force=True)
        assert await transfer.count_rows(target_db) == await transfer.count_rows(source.db)
    finally:
        await target_db.dispose()
