"""Every way a caller can get it wrong, and what they are told. Nothing is half-stored."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from conftest import HealFactory
from helpers import AUTH, Clock, am_alert, am_payload, policy_text

from heal.api.app import create_app
from heal.demo.itsm import FakeITSM

API = tuple[httpx.AsyncClient, Any]
WEBHOOK = "/api/v1/alerts/alertmanager"

ENDPOINTS = [
    ("POST", WEBHOOK, am_payload(am_alert())),
    ("POST", "/api/v1/alerts", [{"labels": {"a": "b"}, "starts_at": "2026-01-01T00:00:00Z"}]),
    ("GET", "/api/v1/incidents", None),
    ("GET", "/api/v1/incidents/1", None),
    ("GET", "/api/v1/actions/1", None),
    ("POST", "/api/v1/actions/1/cancel", None),
]


async def _stored_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/incidents")
    assert response.json()["items"] == []


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "Basic dGVzdDp0ZXN0", "Bearer "]
)
async def test_every_api_endpoint_needs_a_valid_token(
    api: API, method: str, path: str, body: Any, authorization: str | None
) -> None:
    client, _ = api
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://heal", headers=headers
    ) as anonymous:
        response = await anonymous.request(method, path, json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    await _stored_nothing(client)


async def test_token_configured_as_a_hash_is_accepted(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str]
) -> None:
    from heal.settings import hash_token

    _, url = itsm
    tokens = f"{hash_token('hashed-one')}:read,{hash_token('other')}"
    heal = await make_heal(policy_text(url), api_tokens=tokens)
    app = create_app(heal, manage_lifecycle=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://heal"
    ) as client:
        for token, expected in [
            ("hashed-one", 200),
            ("other", 403),  # no scope given: ingest only
            ("test-token", 401),
            (hash_token("hashed-one"), 401),
        ]:
            response = await client.get(
                "/api/v1/incidents", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == expected, token


async def test_body_over_the_limit_is_refused_with_413(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str]
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), max_body_bytes=2048)
    app = create_app(heal, manage_lifecycle=False)
    big = am_payload(*[am_alert(instance=f"host-{i}") for i in range(30)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://heal", headers=AUTH
    ) as client:
        response = await client.post(WEBHOOK, json=big)
        assert response.status_code == 413
        assert "2048 bytes" in response.json()["detail"]

        async def chunks() -> Any:  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b" " * 1000

        streamed = await client.post(
            WEBHOOK, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        await _stored_nothing(client)
        small = await client.post(WEBHOOK, json=am_payload(am_alert()))
        assert small.status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {**am_payload(am_alert()), "alerts": [{**am_alert(), "startsAt": "yesterday"}]},
            "alerts.0.startsAt",
        ),
        (
            {**am_payload(am_alert()), "alerts": [{**am_alert(), "status": "burning"}]},
            "alerts.0.status",
        ),
        (
            {**am_payload(am_alert()), "alerts": [{**am_alert(), "labels": {"a": 1}}]},
            "alerts.0.labels.a",
        ),
        (
            {
                **am_payload(am_alert()),
                "alerts": [{**am_alert(), "startsAt": "0001-01-01T00:00:00Z"}],
            },
            "alerts.0.startsAt",
        ),
        ({k: v for k, v in am_payload(am_alert()).items() if k != "alerts"}, "alerts"),
        ({**am_payload(am_alert()), "alerts": "not a list"}, "alerts"),
    ],
)
async def test_wrong_types_get_422_naming_the_field(api: API, body: Any, field: str) -> None:
    client, _ = api
    body = dict(body)  # the parametrised value is shared by both databases' runs
    # A good alert first in the batch: it must not be stored when a later one is bad.
    if isinstance(body.get("alerts"), list):
        body["alerts"] = [am_alert(instance="good"), *body["alerts"]]
        field = field.replace("alerts.0", "alerts.1")
    response = await client.post(WEBHOOK, json=body)
    assert response.status_code == 422
    fields = [error["field"] for error in response.json()["detail"]]
    assert field in fields
    await _stored_nothing(client)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2", b"\xff\xfe"])
async def test_malformed_json_gets_422(api: API, raw: bytes) -> None:
    client, _ = api
    response = await client.post(WEBHOOK, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"]
    await _stored_nothing(client)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"labels": {}, "starts_at": "2026-01-01T00:00:00Z"}], "0.labels"),
        ([{"labels": {"a": "b"}}], "0.starts_at"),
        (
            [{"labels": {"a": "b"}, "starts_at": "2026-01-01T00:00:00Z", "colour": "red"}],
            "0.colour",
        ),
        ({"labels": {"a": "b"}}, "body"),
    ],
)
async def test_generic_api_rejects_bad_alerts(api: API, body: Any, field: str) -> None:
    client, _ = api
    response = await client.post("/api/v1/alerts", json=body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["detail"]]
    await _stored_nothing(client)


async def test_overload_answers_503_with_retry_after_and_stores_nothing(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str]
) -> None:
    _, url = itsm
    heal = await make_heal(policy_text(url), max_pending_writes=1)
    app = create_app(heal, manage_lifecycle=False)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def long_write() -> None:
        async with heal.db.write():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(long_write())
    await holding.wait()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://heal", headers=AUTH
    ) as client:
        response = await client.post(WEBHOOK, json=am_payload(am_alert()))
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        release.set()
        await holder
        await _stored_nothing(client)
        retried = await client.post(WEBHOOK, json=am_payload(am_alert()))
        assert retried.status_code == 202


async def test_unknown_ids_are_404_and_finished_actions_409(
    api: API, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    client, _ = api
    assert (await client.get("/api/v1/incidents/999")).status_code == 404
    assert (await client.get("/api/v1/actions/999")).status_code == 404
    assert (await client.post("/api/v1/actions/999/cancel")).status_code == 404
    assert (await client.get("/api/v1/incidents/abc")).status_code == 422

    body = (await client.post(WEBHOOK, json=am_payload(am_alert()))).json()
    incident = (await client.get(f"/api/v1/incidents/{body['incident_ids'][0]}")).json()
    action_id = incident["actions"][0]["id"]
    cancelled = await client.post(
        f"/api/v1/actions/{action_id}/cancel", json={"reason": "maintenance window"}
    )
    assert cancelled.status_code == 200
    assert cancelled.json() == {"id": action_id, "status": "failure", "failure_type": "user_abort"}
    again = await client.post(f"/api/v1/actions/{action_id}/cancel")
    assert again.status_code == 409
    assert "already finished with status failure" in again.json()["detail"]
    action = (await client.get(f"/api/v1/actions/{action_id}")).json()
    assert action["message"].endswith(": maintenance window")
    assert action["message"].startswith("cancelled by token:")


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"status": "burning"}, {"since": "soon"}, {"cursor": 0}],
)
async def test_bad_query_parameters_get_422(api: API, params: dict[str, Any]) -> None:
    client, _ = api
    response = await client.get("/api/v1/incidents", params=params)
    assert response.status_code == 422
    assert next(iter(params)) in response.json()["detail"][0]["field"]


async def test_what_postgres_would_refuse_is_stored_the_same_on_every_backend(api: API) -> None:
    """A NUL is stored escaped, an over-long alertname and fingerprint hashed: 202, twice."""
    client, _ = api
    name = "N" * 600  # its group key is over the 512 of the column
    odd = {
        **am_alert(alertname=name, detail="a\x00b"),
        "annotations": {"summary": "nul\x00here"},
        "generatorURL": "http://x/\x00",
        "fingerprint": "f" * 200,
    }
    first = await client.post(WEBHOOK, json=am_payload(am_alert(instance="good"), odd))
    assert first.status_code == 202, first.text
    assert first.json()["new"] == 2
    again = await client.post(WEBHOOK, json=am_payload(odd, {**odd, "fingerprint": "g" * 200}))
    assert again.status_code == 202, again.text
    assert again.json()["duplicates"] == 1  # the hashed fingerprint is stable
    assert again.json()["incident_ids"] == first.json()["incident_ids"][-1:]  # so is the key
    incident = (await client.get(f"/api/v1/incidents/{again.json()['incident_ids'][0]}")).json()
    stored = [a for a in incident["alerts"] if a["labels"].get("detail")]
    assert [a["labels"]["detail"] for a in stored] == ["a\\u0000b", "a\\u0000b"]
    assert stored[0]["annotations"]["summary"] == "nul\\u0000here"
    assert [len(a["fingerprint"]) for a in stored] == [71, 71]  # "sha256:" + 64 hex
    assert len(incident["title"]) == 500


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        (am_alert(severity="s" * 51), "alerts.1.labels.severity"),
        (am_alert(detail="\ud800"), "alerts.1.labels.detail"),
        ({**am_alert(), "labels": {"alertname": "X", "\udfff": "v"}}, "alerts.1.labels.'\\udfff'"),
    ],
)
async def test_a_value_no_backend_can_store_is_422_naming_alert_and_field(
    api: API, alert: dict[str, Any], field: str
) -> None:
    client, _ = api
    body = json.dumps(am_payload(am_alert(instance="good"), alert))  # \ud800 stays escaped
    response = await client.post(
        WEBHOOK, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["field"] == field
    assert error["message"].startswith(f"alert {alert['labels']['alertname']!r}: ")
    assert error["type"] == "unstorable"
    await _stored_nothing(client)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/incidents/9223372036854775808",
        "/api/v1/actions/9223372036854775808",
        "/api/v1/approvals/9223372036854775808",
        "/api/v1/incidents?cursor=9223372036854775808",
        "/api/v1/approvals?cursor=99999999999999999999",
        "/api/v1/incidents/-9223372036854775809",
    ],
)
async def test_ids_beyond_64_bits_are_422_not_500(api: API, path: str) -> None:
    client, _ = api
    response = await client.get(path)
    assert response.status_code == 422, response.text


LATE = "9999-12-31T23:00:00-05:00"  # in year 10000 once in UTC


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (WEBHOOK, am_payload({**am_alert(), "startsAt": LATE}), "alerts.0.startsAt"),
        (WEBHOOK, am_payload({**am_alert(), "endsAt": LATE}), "alerts.0.endsAt"),
        ("/api/v1/alerts", [{"labels": {"a": "b"}, "starts_at": LATE}], "0.starts_at"),
        (
            "/api/v1/alerts",
            [{"labels": {"a": "b"}, "starts_at": "0001-01-01T00:00:00Z"}],
            "0.starts_at",
        ),
    ],
)
async def test_times_that_do_not_exist_in_utc_and_the_zero_start_are_422(
    api: API, path: str, body: Any, field: str
) -> None:
    client, _ = api
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["detail"]]
    await _stored_nothing(client)
    since = await client.get("/api/v1/incidents", params={"since": LATE})
    assert since.status_code == 422
    assert since.json()["detail"][0]["field"] == "query.since"


async def test_free_text_with_a_nul_is_stored_escaped(api: API) -> None:
    client, _ = api
    silence = await client.post(
        "/api/v1/silences",
        json={"matchers": {"service": "a\x00"}, "duration": 60, "comment": "nul\x00"},
    )
    assert silence.status_code == 201, silence.text
    assert silence.json()["comment"] == "nul\\u0000"
    assert silence.json()["matchers"] == {"service": "a\\u0000"}
    listed = await client.get("/api/v1/incidents", params={"severity": "x\x00"})
    assert listed.status_code == 200


def test_openapi_documents_the_422_body_heal_returns(api: API) -> None:
    _, heal = api
    document = create_app(heal, manage_lifecycle=False).openapi()
    assert "HTTPValidationError" not in json.dumps(document)
    refs = {
        (path, method): operation["responses"]["422"]["content"]["application/json"]["schema"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "422" in operation["responses"]
    }
    assert len(refs) >= 15
    for (path, _method), schema in refs.items():
        expected = "Problem" if path.startswith("/api/v1/chat/") else "ValidationErrors"
        assert schema == {"$ref": f"#/components/schemas/{expected}"}, path
    fields = document["components"]["schemas"]["FieldError"]["properties"]
    assert set(fields) == {"field", "message", "type"}
