"""/api/v1/playbooks: list, show, approve, deprecate, edit, delete, export and import."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from playbook_support import playbook_row

from heal.app import Heal
from heal.decide.playbook_admin import parse_yaml
from heal.domain.playbooks import params_key
from heal.settings import hash_token
from heal.store import playbooks_repo, users_repo

CHECKOUT = {"alertname": "CheckoutDown", "namespace": "shop", "deployment": "checkout"}
Api = tuple[httpx.AsyncClient, Heal]


async def _add(heal: Heal, **changes: object) -> int:
    row = playbook_row(CHECKOUT, status="draft", runs=3, successes=2)
    row.update(changes)
    async with heal.db.write() as connection:
        return await playbooks_repo.insert_playbook(connection, row)


async def _person(heal: Heal, name: str, role: str) -> dict[str, str]:
    now = datetime.now(UTC)
    async with heal.db.write() as connection:
        user = await users_repo.add(connection, name, role, [], now)
        await users_repo.add_token(connection, user, hash_token(f"t-{name}"), "test", now)
    return {"Authorization": f"Bearer t-{name}"}


async def test_list_show_approve_and_deprecate(api: Api) -> None:
    client, heal = api
    playbook = await _add(heal)
    listed = (await client.get("/api/v1/playbooks", params={"status": "draft"})).json()
    assert [p["id"] for p in listed] == [playbook]
    shown = (await client.get(f"/api/v1/playbooks/{playbook}")).json()
    assert shown["action"] == "open-ticket"
    assert (shown["runs"], shown["verified_successes"], shown["rejections"]) == (3, 2, 0)
    assert shown["signature"]["labels"] == {"namespace": "shop", "deployment": "checkout"}
    approved = (await client.post(f"/api/v1/playbooks/{playbook}/approve")).json()
    assert approved["status"] == "approved"
    assert approved["version"] == shown["version"] + 1
    deprecated = (await client.post(f"/api/v1/playbooks/{playbook}/deprecate")).json()
    assert deprecated["status"] == "deprecated"
    assert (await client.get("/api/v1/playbooks", params={"status": "draft"})).json() == []


async def test_edit_and_delete(api: Api) -> None:
    client, heal = api
    playbook = await _add(heal)
    other = await _add(heal, params={"replicas": 2}, params_key="other")
    edited = await client.patch(
        f"/api/v1/playbooks/{playbook}", json={"name": "restart checkout", "params": {"x": 1}}
    )
    assert edited.status_code == 200
    assert (edited.json()["name"], edited.json()["params"]) == ("restart checkout", {"x": 1})
    assert (await client.patch(f"/api/v1/playbooks/{other}", json={"bogus": 1})).status_code == 422
    assert (await client.delete(f"/api/v1/playbooks/{playbook}")).status_code == 204
    missing = await client.get(f"/api/v1/playbooks/{playbook}")
    assert missing.status_code == 404
    assert f"playbook {playbook} not found" in missing.text
    assert (await client.post(f"/api/v1/playbooks/{playbook}/approve")).status_code == 404


async def test_an_edit_onto_another_playbooks_key_is_a_conflict(api: Api) -> None:
    client, heal = api
    await _add(heal, params={"x": 1}, params_key=params_key({"x": 1}))
    second = await _add(heal)
    answer = await client.patch(f"/api/v1/playbooks/{second}", json={"params": {"x": 1}})
    assert answer.status_code == 409
    assert "already has this signature" in answer.text


async def test_export_then_import_elsewhere_round_trips(api: Api) -> None:
    client, heal = api
    await _add(heal, status="approved")
    exported = await client.get("/api/v1/playbooks/export")
    assert exported.headers["content-type"].startswith("application/yaml")
    assert "kind: heal/playbooks" in exported.text

    records = [r.model_dump(mode="json") for r in parse_yaml(exported.text)]
    again = await client.post("/api/v1/playbooks/import", json={"playbooks": records})
    assert again.json() == {"created": 0, "updated": 1}
    records[0]["signature"]["labels"]["deployment"] = "cart"
    created = await client.post("/api/v1/playbooks/import", json={"playbooks": records})
    assert created.json() == {"created": 1, "updated": 0}
    assert len((await client.get("/api/v1/playbooks")).json()) == 2
    bad = dict(records[0], runs=1, verified_successes=2)
    refused = await client.post("/api/v1/playbooks/import", json={"playbooks": [bad]})
    assert refused.status_code == 422


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_only_approvers_change_what_may_be_proposed(api: Api, role: str) -> None:
    client, heal = api
    playbook = await _add(heal)
    headers = await _person(heal, f"someone-{role}", role)
    assert (await client.get("/api/v1/playbooks", headers=headers)).status_code == 200
    refused = await client.post(f"/api/v1/playbooks/{playbook}/approve", headers=headers)
    assert refused.status_code == 403
    assert (
        await client.delete(f"/api/v1/playbooks/{playbook}", headers=headers)
    ).status_code == 403
    approver = await _person(heal, "carol", "approver")
    done = await client.post(f"/api/v1/playbooks/{playbook}/approve", headers=approver)
    assert done.status_code == 200
