"""Health, readiness, metrics, OpenAPI, and the full loop with the runtime running."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from conftest import HealFactory
from helpers import AUTH, am_alert, am_payload, policy_text

from heal.api.app import create_app
from heal.demo.itsm import FakeITSM

API = tuple[httpx.AsyncClient, Any]


async def test_health_and_readiness(api: API) -> None:
    client, heal = api
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    heal.running = False
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["problems"] == ["heal is not started"]


async def test_metrics_count_alerts_and_duplicates(api: API) -> None:
    client, _ = api

    def sample(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = (await client.get("/metrics")).text
    payload = am_payload(am_alert())
    await client.post("/api/v1/alerts/alertmanager", json=payload)
    await client.post("/api/v1/alerts/alertmanager", json=payload)
    after = (await client.get("/metrics")).text
    received = 'heal_alerts_received_total{source="alertmanager"}'
    dedup = 'heal_alerts_deduplicated_total{source="alertmanager"}'
    assert sample(after, received) - sample(before, received) == 2
    assert sample(after, dedup) - sample(before, dedup) == 1
    for family in (
        "heal_wake_lateness_seconds",
        "heal_node_duration_seconds",
        "heal_action_status_total",
        "heal_incidents_opened_total",
    ):
        assert f"# TYPE {family}" in after


async def test_openapi_documents_the_api(api: API) -> None:
    client, _ = api
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/alerts/alertmanager" in spec["paths"]
    assert "503" in spec["paths"]["/api/v1/alerts/alertmanager"]["post"]["responses"]
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_api_docs_load_nothing_from_outside(api: API, page: str) -> None:
    """An air-gapped heal still shows its API page: every asset is heal's own."""
    client, _ = api
    html = (await client.get(page)).text
    assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", html)
    assets = re.findall(r"(?:src|href)=[\"']?(/[^\"'\s>]+\.(?:js|css|png))", html)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        answer = await client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 1000, asset


async def test_alert_to_successful_action_with_the_runtime_running(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str]
) -> None:
    """No hand-driving: the embedded runtime claims and runs the wakes in real time."""
    fake, url = itsm
    heal = await make_heal(
        policy_text(url, **{"schedule_timedelta: 2": "schedule_timedelta: 0.1"}), worker=True
    )
    app = create_app(heal, manage_lifecycle=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://heal", headers=AUTH
    ) as client:
        alerts = [am_alert(service=f"svc-{i}") for i in range(5)]
        body = (await client.post("/api/v1/alerts/alertmanager", json=am_payload(*alerts))).json()
        assert body["actions_created"] == 5
        statuses: list[str] = []
        for _ in range(200):
            page = (await client.get("/api/v1/incidents")).json()["items"]
            statuses = [s for i in page for s in i["actions"]]
            if statuses == ["success"] * 5:
                break
            await asyncio.sleep(0.05)
        assert statuses == ["success"] * 5
    assert fake.tickets_created == 5
    assert fake.overlaps == 0
