"""Obsolete approvals from the terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import alert, policy_text
from typer.testing import CliRunner

from heal.app import Heal
from heal.cli.main import app
from heal.policy import load_policy_text
from heal.settings import Settings

APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 1, expires_in: 1800}
"""


def _resolved_while_pending(db_url: str) -> None:
    async def work() -> None:
        heal = Heal.build(
            Settings(database_url=db_url),
            load_policy_text(policy_text("http://127.0.0.1:9") + APPROVAL),
        )
        await heal.start(worker=False)
        try:
            await heal.ingest.ingest([alert(), alert(service="payments")])
            await heal.ingest.ingest([alert(status="resolved")])
        finally:
            await heal.stop()

    asyncio.run(work())


def test_approvals_list_shows_obsolete_ones_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("HEAL_TEST_ITSM_TOKEN", "unused-token")
    db_url = f"sqlite+aiosqlite:///{tmp_path}/heal.db"
    _resolved_while_pending(db_url)
    runner = CliRunner()
    obsolete = runner.invoke(
        app, ["approvals", "list", "--status", "obsolete", "--database-url", db_url]
    )
    assert obsolete.exit_code == 0, obsolete.output
    rows = [line for line in obsolete.output.splitlines() if "obsolete" in line]
    assert len(rows) == 1
    pending = runner.invoke(app, ["approvals", "list", "--database-url", db_url])
    assert "obsolete" not in pending.output
    assert "pending" in pending.output
    shown = runner.invoke(app, ["approvals", "show", "1", "--database-url", db_url])
    assert "the incident resolved while it was pending" in shown.output
