"""The delivery records as people read them: ``GET /api/v1/notifications`` and
``heal notifications list`` (SQLite)."""

from __future__ import annotations

import httpx
import pytest
from conftest import HealFactory
from fakes.hooks import FakeTeams
from fakes.server import serving
from helpers import AUTH, Clock, alert

from heal.api.app import create_app

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

POLICY = """
notifications:
  channels:
    teams: {type: teams, url: "TEAMS_URL/webhookb2/x/IncomingWebhook/y/z", min_interval: 0}
    gone: {type: teams, url: "TEAMS_URL/nowhere", min_interval: 0}
  routes:
    - events: [incident_opened]
      channels: [teams, gone]
"""


async def _told(make_heal: HealFactory, clock: Clock, teams_url: str) -> httpx.AsyncClient:
    heal = await make_heal(POLICY.replace("TEAMS_URL", teams_url), clock=clock)
    heal.chat.clock = clock
    assert heal.chat.routed is not None
    heal.chat.routed.clock = clock
    await heal.ingest.ingest([alert()])
    await heal.chat.run_once()
    app = create_app(heal, manage_lifecycle=False)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://heal", headers=AUTH
    )


async def test_the_api_lists_one_record_per_message_and_channel(
    make_heal: HealFactory, clock: Clock
) -> None:
    teams = FakeTeams()
    async with (
        serving(teams.app()) as teams_url,
        await _told(make_heal, clock, teams_url) as client,
    ):
        everything = (await client.get("/api/v1/notifications")).json()
        failed = (await client.get("/api/v1/notifications?status=failed")).json()
        by_channel = (await client.get("/api/v1/notifications?channel=teams")).json()
        anonymous = await client.get("/api/v1/notifications", headers={"Authorization": ""})

    assert [(r["channel"], r["event"], r["status"]) for r in everything] == [
        ("gone", "incident_opened", "failed"),
        ("teams", "incident_opened", "sent"),
    ]
    (refused,) = failed
    assert refused["error"] == "teams gone: HTTP 404"
    assert refused["incident_id"] == 1
    assert [r["status"] for r in by_channel] == ["sent"]
    assert anonymous.status_code == 401
