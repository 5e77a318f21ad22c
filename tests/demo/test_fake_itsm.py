"""Behaviour of the fake ITSM server (heal.demo.itsm)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from heal.demo.itsm import FakeITSM, create_app, serve_in_background, stop

FIELDS = [{"key": "title", "value": "disk full on web-1"}, {"key": "host", "value": "web-1"}]


def client_for(itsm: FakeITSM) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(itsm)), base_url="http://itsm"
    )


@pytest.fixture
def itsm() -> FakeITSM:
    return FakeITSM()


@pytest.fixture
async def client(itsm: FakeITSM) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(itsm) as c:
        yield c


async def create(client: httpx.AsyncClient, key: str | None = None, **extra: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post(
        "/create_ticket/", json={"service_id": 7, "fields": FIELDS, **extra}, headers=headers
    )


def assert_envelope(body: dict[str, Any]) -> None:
    assert set(body) == {"result", "code", "message", "data"}
    assert isinstance(body["result"], bool)
    assert isinstance(body["code"], int)
    assert isinstance(body["message"], str)


async def test_create_ticket_envelope_and_stored_ticket(
    client: httpx.AsyncClient, itsm: FakeITSM
) -> None:
    resp = await create(client)
    assert resp.status_code == 200
    body = resp.json()
    assert_envelope(body)
    assert body["result"] is True
    assert body["code"] == 0
    assert body["message"] == "success"
    assert body["data"] == {
        "sn": "REQ00000001",
        "id": 1,
        "ticket_url": "http://itsm/ticket/REQ00000001",
    }
    assert itsm.tickets_created == 1
    ticket = itsm.tickets["REQ00000001"]
    assert ticket.title == "disk full on web-1"
    assert ticket.fields == FIELDS
    assert ticket.current_status == "RUNNING"
    assert ticket.approve_result is None
    assert ticket.extra == {"service_id": 7}

    shown = (await client.get("/ticket/REQ00000001")).json()
    assert_envelope(shown)
    assert shown["data"]["sn"] == "REQ00000001"
    assert shown["data"]["title"] == "disk full on web-1"
    assert shown["data"]["current_status"] == "RUNNING"
    assert shown["data"]["polls"] == 0


async def test_same_idempotency_key_returns_same_ticket(
    client: httpx.AsyncClient, itsm: FakeITSM
) -> None:
    first = (await create(client, key="incident-1/action-0")).json()["data"]
    second = (await create(client, key="incident-1/action-0")).json()["data"]
    assert first == second
    assert itsm.tickets_created == 1
    assert [r.idempotency_key for r in itsm.requests_to("/create_ticket/")] == [
        "incident-1/action-0",
        "incident-1/action-0",
    ]


async def test_distinct_keys_and_no_key_create_distinct_tickets(
    client: httpx.AsyncClient, itsm: FakeITSM
) -> None:
    a = (await create(client, key="k-a")).json()["data"]["sn"]
    b = (await create(client, key="k-b")).json()["data"]["sn"]
    c = (await create(client)).json()["data"]["sn"]
    d = (await create(client)).json()["data"]["sn"]
    assert len({a, b, c, d}) == 4
    assert itsm.tickets_created == 4
    assert (a, d) == ("REQ00000001", "REQ00000004")


async def test_status_polls_progress_to_finished() -> None:
    itsm = FakeITSM(finish_after_polls=3, approve=False)
    async with client_for(itsm) as client:
        sn = (await create(client)).json()["data"]["sn"]
        seen = []
        for _ in range(4):
            body = (await client.get("/get_ticket_status/", params={"sn": sn})).json()
            assert_envelope(body)
            assert body["result"] is True
            seen.append((body["data"]["current_status"], body["data"]["approve_result"]))
        assert body["data"]["sn"] == sn
        assert body["data"]["updated_by"] == "fake-itsm"
        assert body["data"]["ticket_url"] == f"http://itsm/ticket/{sn}"
    assert seen == [
        ("RUNNING", None),
        ("RUNNING", None),
        ("FINISHED", False),
        ("FINISHED", False),
    ]
    assert itsm.tickets[sn].polls == 4


async def test_custom_final_status() -> None:
    itsm = FakeITSM(finish_after_polls=1, final_status="TERMINATED")
    async with client_for(itsm) as client:
        sn = (await create(client)).json()["data"]["sn"]
        data = (await client.get("/get_ticket_status/", params={"sn": sn})).json()["data"]
    assert data["current_status"] == "TERMINATED"
    assert data["approve_result"] is True


async def test_unknown_sn(client: httpx.AsyncClient) -> None:
    resp = await client.get("/get_ticket_status/", params={"sn": "REQ404"})
    assert resp.status_code == 200
    body = resp.json()
    assert_envelope(body)
    assert body == {
        "result": False,
        "code": 404,
        "message": "ticket REQ404 not found",
        "data": None,
    }


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"title": "x"}', "'fields'"),
        (b'{"fields": {"key": "title"}}', "'fields'"),
        (b'{"fields": [{"value": 1}]}', "fields[0]"),
    ],
)
async def test_bad_create_body_is_400(
    client: httpx.AsyncClient, itsm: FakeITSM, content: bytes, problem: str
) -> None:
    resp = await client.post(
        "/create_ticket/", content=content, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    body = resp.json()
    assert_envelope(body)
    assert body["result"] is False
    assert problem in body["message"]
    assert itsm.tickets_created == 0


async def test_fail_create_times_then_success() -> None:
    itsm = FakeITSM(fail_create_times=2)
    async with client_for(itsm) as client:
        for _ in range(2):
            resp = await create(client, key="same")
            assert resp.status_code == 500
            body = resp.json()
            assert_envelope(body)
            assert body["result"] is False
            assert body["message"] == "ITSM unavailable"
            assert itsm.tickets_created == 0
        ok = await create(client, key="same")
    assert ok.status_code == 200
    assert ok.json()["result"] is True
    assert itsm.tickets_created == 1
    assert [r.status_code for r in itsm.requests_to("/create_ticket/")] == [500, 500, 200]


async def test_envelope_error_times() -> None:
    itsm = FakeITSM(envelope_error_times=1)
    async with client_for(itsm) as client:
        bad = await create(client)
        good = await create(client)
    assert bad.status_code == 200
    assert bad.json() == {
        "result": False,
        "code": 9999,
        "message": "service_id invalid",
        "data": None,
    }
    assert good.json()["result"] is True
    assert itsm.tickets_created == 1


async def test_token_auth() -> None:
    itsm = FakeITSM(token="s3cret")
    async with client_for(itsm) as client:
        missing = await create(client)
        wrong = await client.post(
            "/create_ticket/",
            json={"fields": FIELDS},
            headers={"Authorization": "Bearer nope"},
        )
        stats_denied = await client.get("/_stats")
        ok = await client.post(
            "/create_ticket/",
            json={"fields": FIELDS},
            headers={"Authorization": "Bearer s3cret"},
        )
    for resp in (missing, wrong, stats_denied):
        assert resp.status_code == 401
        assert_envelope(resp.json())
        assert resp.json()["result"] is False
        assert resp.json()["code"] == 401
    assert ok.status_code == 200
    assert ok.json()["result"] is True
    assert itsm.tickets_created == 1


async def test_overlapping_requests_with_same_action_are_detected() -> None:
    itsm = FakeITSM(latency=0.2)
    async with client_for(itsm) as client:
        headers = {"X-Heal-Action": "incident-1/restart"}
        await asyncio.gather(
            client.post("/create_ticket/", json={"fields": FIELDS}, headers=headers),
            client.post("/create_ticket/", json={"fields": FIELDS}, headers=headers),
        )
        stats = (await client.get("/_stats")).json()["data"]
    assert itsm.overlaps == 1
    assert stats == {"tickets_created": 2, "requests": 2, "overlaps": 1}
    first, second = itsm.requests
    assert first.ended is not None
    assert second.ended is not None
    assert second.started < first.ended  # really were in flight together
    assert {r.action_key for r in itsm.requests} == {"incident-1/restart"}


async def test_concurrent_different_actions_and_sequential_same_action_do_not_overlap() -> None:
    itsm = FakeITSM(latency=0.1)
    async with client_for(itsm) as client:
        await asyncio.gather(
            client.post("/create_ticket/", json={"fields": FIELDS}, headers={"X-Heal-Action": "a"}),
            client.post("/create_ticket/", json={"fields": FIELDS}, headers={"X-Heal-Action": "b"}),
        )
        for _ in range(2):
            await client.post(
                "/create_ticket/", json={"fields": FIELDS}, headers={"X-Heal-Action": "a"}
            )
    assert itsm.overlaps == 0
    assert len(itsm.requests) == 4
    assert itsm._in_flight == {}


async def test_manual_finish_endpoint(client: httpx.AsyncClient, itsm: FakeITSM) -> None:
    sn = (await create(client)).json()["data"]["sn"]
    resp = await client.post(
        f"/_tickets/{sn}/finish", json={"approve": False, "status": "FINISHED"}
    )
    assert resp.status_code == 200
    assert resp.json()["data"]["current_status"] == "FINISHED"
    assert itsm.tickets[sn].approve_result is False
    # the first poll already sees the hand-finished state and polling does not override it
    data = (await client.get("/get_ticket_status/", params={"sn": sn})).json()["data"]
    assert (data["current_status"], data["approve_result"]) == ("FINISHED", False)
    missing = await client.post("/_tickets/REQ999/finish", json={"approve": True})
    assert missing.status_code == 404
    assert missing.json()["result"] is False


async def test_operate_ticket(client: httpx.AsyncClient, itsm: FakeITSM) -> None:
    sn = (await create(client)).json()["data"]["sn"]
    resp = await client.post("/operate_ticket/", json={"sn": sn, "action_type": "WITHDRAW"})
    assert resp.json() == {
        "result": True,
        "code": 0,
        "message": "success",
        "data": {"sn": sn, "current_status": "REVOKED"},
    }
    # a revoked ticket stays revoked however often it is polled
    for _ in range(3):
        await client.get("/get_ticket_status/", params={"sn": sn})
    assert itsm.tickets[sn].current_status == "REVOKED"
    again = (
        await client.post("/operate_ticket/", json={"sn": sn, "action_type": "TERMINATE"})
    ).json()
    assert again["result"] is False
    bad = await client.post("/operate_ticket/", json={"sn": sn, "action_type": "EXPLODE"})
    assert bad.status_code == 400


async def test_fast_approval_ticket(client: httpx.AsyncClient, itsm: FakeITSM) -> None:
    fields = [
        {"key": "title", "value": "approve restart"},
        {"key": "APPROVER", "value": "alice,bob"},
    ]
    resp = await client.post(
        "/create_fast_approval_ticket/",
        json={"fields": fields},
        headers={"Idempotency-Key": "ap-1"},
    )
    again = await client.post(
        "/create_fast_approval_ticket/",
        json={"fields": fields},
        headers={"Idempotency-Key": "ap-1"},
    )
    sn = resp.json()["data"]["sn"]
    assert again.json()["data"]["sn"] == sn
    assert itsm.tickets_created == 1
    assert itsm.tickets[sn].approvers == ["alice", "bob"]
    progression = []
    for _ in range(2):
        data = (await client.get("/ticket_approve_result/", params={"sn": sn})).json()["data"]
        assert set(data) == {"sn", "current_status", "approve_result", "updated_by"}
        progression.append((data["current_status"], data["approve_result"]))
    assert progression == [("RUNNING", None), ("FINISHED", True)]
    no_approver = await client.post(
        "/create_fast_approval_ticket/", json={"fields": [{"key": "title", "value": "x"}]}
    )
    assert no_approver.status_code == 400


async def test_serve_in_background_over_tcp() -> None:
    itsm = FakeITSM(finish_after_polls=1)
    server, task, base_url = await serve_in_background(itsm)
    try:
        assert base_url.startswith("http://127.0.0.1:")
        assert not base_url.endswith(":0")
        async with httpx.AsyncClient(base_url=base_url) as client:
            created = (await create(client, key="tcp")).json()["data"]
            assert created["ticket_url"] == f"{base_url}/ticket/{created['sn']}"
            status = (await client.get("/get_ticket_status/", params={"sn": created["sn"]})).json()[
                "data"
            ]
            assert status["current_status"] == "FINISHED"
            shown = (await client.get(created["ticket_url"])).json()["data"]
            assert shown["polls"] == 1
    finally:
        await stop(server, task)
    assert task.done()
    assert itsm.tickets_created == 1
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=base_url) as client:
            await client.get("/_stats")
