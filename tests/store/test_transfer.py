"""Moving an embedded (SQLite) installation to PostgreSQL keeps everything, and work goes on."""

from __future__ import annotations

import pytest
from conftest import HealFactory
from helpers import SERVICE_TOKENS, Clock, alert, drive, policy_text

from heal.app import Heal
from heal.demo.itsm import FakeITSM
from heal.policy import load_policy_text
from heal.settings import Settings
from heal.store import actions_repo, incidents_repo, transfer
from heal.store.db import Database

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
        assert ("timeline", before[-1].rows) in seen
        with pytest.raises(transfer.TargetNotEmpty):
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
