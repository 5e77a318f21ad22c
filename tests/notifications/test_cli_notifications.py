"""``heal notifications list``, through the real command line (SQLite)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakes.hooks import FakeTeams
from fakes.server import serving
from helpers import alert
from typer.testing import CliRunner, Result

from heal.app import Heal
from heal.cli.main import app
from heal.policy.loader import load_policy_text
from heal.settings import Settings

POLICY = """
notifications:
  channels:
    teams: {type: teams, url: "TEAMS_URL/webhookb2/x/IncomingWebhook/y/z", min_interval: 0}
    gone: {type: teams, url: "TEAMS_URL/nowhere", min_interval: 0}
  routes:
    - events: [incident_opened]
      channels: [teams, gone]
"""


def heal_cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _told(database_url: str) -> None:
    async def work() -> None:
        teams = FakeTeams()
        async with serving(teams.app()) as teams_url:
            policy = load_policy_text(POLICY.replace("TEAMS_URL", teams_url))
            heal = Heal.build(Settings(database_url=database_url), policy)
            await heal.start(worker=False)
            try:
                await heal.ingest.ingest([alert()])
                await heal.chat.run_once()
            finally:
                await heal.stop()

    asyncio.run(work())


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("HEAL_DATABASE_URL", "HEAL_CONFIG", "HEAL_URL", "HEAL_TOKEN", "HEAL_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # no wrapped cells
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path}/heal.db"
    _told(url)
    return url


def test_the_table_shows_each_channels_record(database_url: str) -> None:
    table = heal_cli("notifications", "list", "--database-url", database_url)
    assert table.exit_code == 0, table.output
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in table.output.splitlines()
        if "incident_opened" in line
    ]
    # id, incident, event, channel, status, tries, created, error
    assert [(r[3], r[4], r[7]) for r in rows] == [
        ("gone", "failed", "teams gone: HTTP 404"),
        ("teams", "sent", "-"),
    ]


def test_json_and_filters(database_url: str) -> None:
    sent = heal_cli(
        "notifications", "list", "--status", "sent", "--json", "--database-url", database_url
    )
    assert sent.exit_code == 0, sent.output
    (record,) = json.loads(sent.output)
    assert (record["channel"], record["status"], record["attempts"]) == ("teams", "sent", 0)
    assert record["event"] == "incident_opened"

    none = heal_cli("notifications", "list", "--channel", "pager", "--database-url", database_url)
    assert none.exit_code == 0
    assert "no notifications" in none.output
