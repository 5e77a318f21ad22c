"""GET /api/v1/kb/search: the knowledge base over the API, for read tokens only."""

from __future__ import annotations

import httpx
from conftest import HealFactory
from helpers import AUTH, TOKEN, Clock, policy_text

from heal.api.app import create_app
from heal.decide.knowledge import RemediationSummary, record_remediation
from heal.demo.itsm import FakeITSM
from heal.settings import hash_token

CRASH = RemediationSummary(
    incident_id=4,
    title="KubePodCrashLooping",
    action="restart-workload",
    labels={"alertname": "KubePodCrashLooping", "namespace": "shop", "deployment": "web"},
    params={"namespace": "shop", "name": "web"},
    outcome="verified",
    effectiveness=5,
    seconds_to_resolve=240,
)


async def test_search_over_the_api(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    tokens = f"{hash_token(TOKEN)}:admin,{hash_token('alertmanager')}"
    heal = await make_heal(policy_text(url), clock=clock, api_tokens=tokens)
    async with heal.db.write() as connection:
        await record_remediation(connection, CRASH, clock.now)
    transport = httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://heal") as client:
        answer = await client.get("/api/v1/kb/search", params={"q": "crash shop"}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        (hit,) = answer.json()
        assert hit["ref"] == "incident 4"
        assert hit["kind"] == "remediation"
        assert hit["title"] == "KubePodCrashLooping in shop/web: restart-workload"
        assert "verified, effectiveness 5, resolved in 4 min" in hit["text"]

        for hostile in ['"crash', "crash AND (", "NEAR(", "-", "\x00", "'; --"]:
            answer = await client.get("/api/v1/kb/search", params={"q": hostile}, headers=AUTH)
            assert answer.status_code == 200, (hostile, answer.text)
        runbooks = {"q": "crash", "kind": "runbook"}
        assert (await client.get("/api/v1/kb/search", params=runbooks, headers=AUTH)).json() == []
        too_many = {"q": "crash", "limit": "1000"}
        assert (
            await client.get("/api/v1/kb/search", params=too_many, headers=AUTH)
        ).status_code == 422

        ingest_only = {"Authorization": "Bearer alertmanager"}
        refused = await client.get("/api/v1/kb/search", params={"q": "x"}, headers=ingest_only)
        assert refused.status_code == 403
