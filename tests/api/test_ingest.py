"""Alertmanager and generic ingest through the API: what an operator sees afterwards."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import HealFactory
from helpers import Clock, alert, am_alert, am_payload, drive, policy_text
from log_capture import captured_logs

from heal.demo.itsm import FakeITSM

WEBHOOK = "/api/v1/alerts/alertmanager"
API = tuple[httpx.AsyncClient, Any]


async def _incidents(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/incidents", params=params)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_firing_alert_opens_an_incident_with_an_action(api: API) -> None:
    client, _ = api
    response = await client.post(WEBHOOK, json=am_payload(am_alert()))
    assert response.status_code == 202
    body = response.json()
    assert body | {"incident_ids": None} == {
        "received": 1,
        "new": 1,
        "resolved": 0,
        "duplicates": 0,
        "incidents_opened": 1,
        "incidents_resolved": 0,
        "actions_created": 1,
        "actions_joined": 0,
        "incident_ids": None,
    }
    incident = (await client.get(f"/api/v1/incidents/{body['incident_ids'][0]}")).json()
    assert incident["status"] == "open"
    assert incident["title"] == "CheckoutDown (service=checkout)"
    assert incident["severity"] == "critical"
    assert [a["labels"]["instance"] for a in incident["alerts"]] == ["10.0.0.1:9100"]
    assert incident["alerts"][0]["ends_at"] is None  # Go's zero time means "no end"
    assert [a["action_name"] for a in incident["actions"]] == ["open-ticket"]
    assert [e["kind"] for e in incident["timeline"]] == [
        "incident.opened",
        "alert.received",
        "rule.matched",
        "action.created",
    ]


async def test_redelivered_webhook_creates_nothing_new(api: API) -> None:
    client, _ = api
    payload = am_payload(am_alert())
    first = (await client.post(WEBHOOK, json=payload)).json()
    again = (await client.post(WEBHOOK, json=payload)).json()
    assert again["duplicates"] == 1
    assert again["new"] == again["actions_created"] == again["incidents_opened"] == 0
    incidents = await _incidents(client)
    assert len(incidents) == 1
    assert incidents[0]["actions"] == {"received": 1}
    assert first["incident_ids"] == [incidents[0]["id"]]


async def test_a_batch_groups_by_the_rules_group_by(api: API) -> None:
    client, _ = api
    payload = am_payload(
        am_alert(instance="a"),
        am_alert(instance="b"),
        am_alert(instance="c"),
        am_alert(service="payments", instance="a"),
    )
    body = (await client.post(WEBHOOK, json=payload)).json()
    assert (body["new"], body["incidents_opened"]) == (4, 2)
    # converge: one in-flight action per incident, the other alerts join it
    assert (body["actions_created"], body["actions_joined"]) == (2, 2)
    incidents = {i["title"]: i for i in await _incidents(client)}
    assert set(incidents) == {"CheckoutDown (service=checkout)", "CheckoutDown (service=payments)"}
    detail = (
        await client.get(f"/api/v1/incidents/{incidents['CheckoutDown (service=checkout)']['id']}")
    ).json()
    assert len(detail["alerts"]) == 3
    assert [e["kind"] for e in detail["timeline"]].count("action.joined") == 2


async def test_partial_resolve_keeps_the_incident_open_until_the_last_alert(api: API) -> None:
    client, _ = api
    await client.post(WEBHOOK, json=am_payload(am_alert(instance="a"), am_alert(instance="b")))
    partial = am_payload(
        am_alert("resolved", instance="a"), am_alert(instance="b"), status="firing"
    )
    body = (await client.post(WEBHOOK, json=partial)).json()
    assert (body["resolved"], body["duplicates"], body["incidents_resolved"]) == (1, 1, 0)
    assert (await _incidents(client))[0]["status"] == "open"

    body = await client.post(WEBHOOK, json=am_payload(am_alert("resolved", instance="b")))
    assert body.json()["incidents_resolved"] == 1
    incident = (await _incidents(client))[0]
    assert incident["status"] == "resolved"
    assert incident["resolution"] == "resolved"
    detail = (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
    assert {a["status"] for a in detail["alerts"]} == {"resolved"}
    assert detail["alerts"][0]["ends_at"].startswith("2026-01-01T12:05:00.123456")
    assert detail["timeline"][-1]["kind"] == "incident.resolved"


async def test_a_stale_firing_redelivery_never_reopens(api: API) -> None:
    client, _ = api
    await client.post(WEBHOOK, json=am_payload(am_alert()))
    await client.post(WEBHOOK, json=am_payload(am_alert("resolved")))
    late = (await client.post(WEBHOOK, json=am_payload(am_alert()))).json()
    assert late["duplicates"] == 1
    assert [i["status"] for i in await _incidents(client)] == ["resolved"]


async def test_firing_again_later_is_a_new_occurrence_and_a_new_incident(api: API) -> None:
    client, _ = api
    await client.post(WEBHOOK, json=am_payload(am_alert()))
    await client.post(WEBHOOK, json=am_payload(am_alert("resolved")))
    again = (
        await client.post(WEBHOOK, json=am_payload(am_alert(starts="2026-01-01T13:00:00Z")))
    ).json()
    assert (again["new"], again["incidents_opened"], again["actions_created"]) == (1, 1, 1)
    assert [i["status"] for i in await _incidents(client)] == ["open", "resolved"]


async def test_skip_delay_skips_an_old_alert_and_says_why(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url, **{"skip_delay: 0": "skip_delay: 30"}), clock=clock)
    report = await heal.ingest.ingest([alert(starts_at=clock.now - timedelta(hours=1))])
    assert (report.incidents_opened, report.actions_created) == (1, 0)
    from heal.store import timeline_repo

    async with heal.db.read() as connection:
        events = await timeline_repo.for_incident(connection, report.incident_ids[0])
    skipped = [e for e in events if e["kind"] == "rule.skipped"]
    assert len(skipped) == 1
    assert "began 3600 s ago, more than skip_delay 30 s" in skipped[0]["message"]
    fresh = await heal.ingest.ingest([alert(starts_at=clock.now, instance="new")])
    assert fresh.actions_created == 1


async def test_an_alert_no_rule_matches_is_an_incident_without_actions(api: API) -> None:
    client, _ = api
    body = (
        await client.post(
            WEBHOOK, json=am_payload(am_alert(alertname="DiskFull", severity="warning"))
        )
    ).json()
    assert (body["incidents_opened"], body["actions_created"]) == (1, 0)
    assert (await _incidents(client))[0]["title"] == "DiskFull"


async def test_a_resolved_alert_never_seen_firing_is_stored_without_an_incident(
    api: API,
) -> None:
    client, _ = api
    body = (await client.post(WEBHOOK, json=am_payload(am_alert("resolved")))).json()
    assert (body["new"], body["incidents_opened"], body["actions_created"]) == (1, 0, 0)
    assert await _incidents(client) == []


async def test_a_template_that_cannot_render_leaves_a_visible_create_failure(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    _, url = itsm
    broken = '"{{ alert.labels.alertname }} on {{ alert.labels.service }}"'
    heal = await make_heal(policy_text(url).replace(broken, '"{{ 1 / 0 }}"'), clock=clock)
    with captured_logs() as logs:
        report = await heal.ingest.ingest([alert()])
    assert report.actions_created == 1
    from heal.store import incidents_repo

    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
    assert (action["status"], action["failure_type"]) == ("failure", "create_failure")
    assert "division by zero" in action["message"]
    assert action["next_wake_at"] is None
    [line] = logs.lines("action failed")  # as loud in the log as any other failure
    assert (line["action_id"], line["failure_type"]) == (action["id"], "create_failure")
    assert "division by zero" in line["reason"]


async def test_generic_api_fingerprints_from_sorted_labels(api: API) -> None:
    client, _ = api
    one = {
        "labels": {"alertname": "CheckoutDown", "service": "checkout", "severity": "page"},
        "starts_at": "2026-01-01T11:59:00+00:00",
    }
    same_labels_other_order = {
        "labels": {"severity": "page", "service": "checkout", "alertname": "CheckoutDown"},
        "starts_at": "2026-01-01T11:59:00+00:00",
        "annotations": {"x": "y"},
    }
    body = (await client.post("/api/v1/alerts", json=[one, same_labels_other_order])).json()
    assert (body["new"], body["duplicates"], body["actions_created"]) == (1, 1, 1)
    explicit = {**one, "fingerprint": "my-own-fp", "starts_at": "2026-01-01T11:59:00+00:00"}
    body = (await client.post("/api/v1/alerts", json=[explicit])).json()
    assert (body["new"], body["actions_joined"]) == (1, 1)


async def test_the_whole_loop_through_the_api(
    api: API, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    client, heal = api
    fake, _ = itsm
    body = (await client.post(WEBHOOK, json=am_payload(am_alert()))).json()
    incident = (await client.get(f"/api/v1/incidents/{body['incident_ids'][0]}")).json()
    action_id = incident["actions"][0]["id"]
    await drive(heal, clock, action_id)
    action = (await client.get(f"/api/v1/actions/{action_id}")).json()
    assert action["status"] == "success"
    assert action["outputs"]["sn"] in fake.tickets
    assert action["nodes"] == ["create_task", "schedule"]
    assert action["alert"]["labels"]["instance"] == "10.0.0.1:9100"
    assert "claimed_until" not in action
    assert [e["kind"] for e in action["timeline"]][-1] == "action.status"
    listing = await _incidents(client, status="open")
    assert listing[0]["actions"] == {"success": 1}


@pytest.mark.parametrize(
    "params", [{"status": "resolved"}, {"severity": "warning"}, {"since": "2030-01-01T00:00:00Z"}]
)
async def test_incident_filters_exclude(api: API, params: dict[str, str]) -> None:
    client, _ = api
    await client.post(WEBHOOK, json=am_payload(am_alert()))
    assert len(await _incidents(client)) == 1
    assert await _incidents(client, **params) == []


async def test_incidents_are_paginated_newest_first(api: API) -> None:
    client, _ = api
    alerts = [am_alert(service=f"svc{i}") for i in range(5)]
    await client.post(WEBHOOK, json=am_payload(*alerts))
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/incidents", params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 5


async def test_concurrent_batches_for_one_new_group_join_one_incident(api: API) -> None:
    """On PostgreSQL each batch has a connection of its own; they race to open the group."""
    client, _ = api
    batches = [
        am_payload(
            am_alert(instance=f"{n}-a"), am_alert(instance=f"{n}-b"), am_alert(service=f"s{n}")
        )
        for n in range(8)
    ]
    responses = await asyncio.gather(*(client.post(WEBHOOK, json=b) for b in batches))
    assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
    assert sum(r.json()["incidents_opened"] for r in responses) == 9  # checkout + s0..s7
    titles = [i["title"] for i in await _incidents(client)]
    assert sorted(titles) == sorted(
        ["CheckoutDown (service=checkout)"] + [f"CheckoutDown (service=s{n})" for n in range(8)]
    )
    [checkout] = [i for i in await _incidents(client) if i["title"].endswith("=checkout)")]
    detail = (await client.get(f"/api/v1/incidents/{checkout['id']}")).json()
    assert len(detail["alerts"]) == 16
    assert len(detail["actions"]) == 1  # converge held across the batches too
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds.count("incident.opened") == 1
    assert kinds.count("action.joined") == 15


async def test_the_same_batch_sent_concurrently_is_stored_once(api: API) -> None:
    """An HA pair of Alertmanagers sends each notification twice, at the same moment."""
    client, _ = api
    forth = am_payload(am_alert(instance="a"), am_alert(instance="b"))
    back = am_payload(am_alert(instance="b"), am_alert(instance="a"))  # may deadlock: retried
    payloads = [forth, back, forth, back]
    responses = await asyncio.gather(*(client.post(WEBHOOK, json=p) for p in payloads))
    assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
    assert sorted(r.json()["new"] for r in responses) == [0, 0, 0, 2]
    assert sorted(r.json()["duplicates"] for r in responses) == [0, 2, 2, 2]
    [incident] = await _incidents(client)
    detail = (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
    assert len(detail["alerts"]) == 2
    assert len(detail["actions"]) == 1
