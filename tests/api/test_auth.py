"""Who may call what: service-token scopes, only people sign, users' token lifecycle."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from conftest import HealFactory
from helpers import TOKEN, Clock, alert, policy_text
from pydantic import ValidationError

from heal.api.app import create_app
from heal.app import Heal
from heal.cli.alerts import start_of_hour, webhook_body
from heal.demo.itsm import FakeITSM
from heal.engine.engine import utcnow
from heal.settings import Settings, hash_token
from heal.store import approvals_repo, incidents_repo, users_repo

APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 1, approver_groups: [], expires_in: 600}
"""


def _client(heal: Heal, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False)),
        base_url="http://heal",
        headers={"Authorization": f"Bearer {token}"},
    )


async def _heal(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock, tokens: str
) -> Heal:
    _, url = itsm
    heal: Heal = await make_heal(policy_text(url) + APPROVAL, clock=clock, api_tokens=tokens)
    heal.approvals.clock = clock
    return heal


async def _pending(heal: Heal) -> int:
    report = await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        (action,) = await incidents_repo.actions_of(connection, report.incident_ids[0])
        approval = await approvals_repo.for_action(connection, action["id"])
    assert approval is not None
    return int(approval["id"])


async def _token(heal: Heal, name: str, role: str = "approver", **token: object) -> str:
    value = f"token-of-{name}-{len(token)}"
    async with heal.db.write() as connection:
        user = await users_repo.by_name(connection, name)
        user_id = (
            int(user["id"]) if user else await users_repo.add(connection, name, role, [], utcnow())
        )
        await users_repo.add_token(
            connection,
            user_id,
            hash_token(value),
            "test",
            utcnow(),
            **token,  # type: ignore[arg-type]
        )
    return value


async def test_a_service_token_never_signs_even_with_the_admin_scope(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, f"{hash_token(TOKEN)}:admin")
    approval_id = await _pending(heal)
    async with _client(heal, TOKEN) as client:
        answer = await client.post(f"/api/v1/approvals/{approval_id}/approve")
        assert answer.status_code == 403
        assert "is a service token; only people sign approvals" in answer.json()["detail"]
        assert (await client.post(f"/api/v1/approvals/{approval_id}/reject")).status_code == 403
        detail = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
    assert detail["status"] == "pending"
    assert detail["signatures"] == []


async def test_a_service_token_may_only_ingest_unless_its_entry_names_scopes(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    tokens = f"{hash_token('alertmanager')},{hash_token('dashboard')}:read"
    heal = await _heal(make_heal, itsm, clock, tokens)
    webhook = webhook_body("CheckoutDown", {}, {}, "firing", start_of_hour())
    async with _client(heal, "alertmanager") as client:
        assert (await client.post("/api/v1/alerts/alertmanager", json=webhook)).status_code == 202
        refused = await client.get("/api/v1/incidents")
        assert refused.status_code == 403
        assert refused.json()["detail"].endswith("token lacks the read scope")
    async with _client(heal, "dashboard") as client:
        assert (await client.get("/api/v1/incidents")).status_code == 200
        assert (await client.post("/api/v1/alerts/alertmanager", json=webhook)).status_code == 403
        silence = {"matchers": {"service": "checkout"}, "duration": 60, "comment": "deploy"}
        assert (await client.post("/api/v1/silences", json=silence)).status_code == 403
        assert (await client.post("/api/v1/actions/1/cancel")).status_code == 403


async def test_a_users_token_is_refused_once_revoked_expired_or_disabled(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _heal(make_heal, itsm, clock, f"{hash_token(TOKEN)}:admin")
    approval_id = await _pending(heal)
    live = await _token(heal, "alice", expires_at=utcnow() + timedelta(hours=1))
    expired = await _token(heal, "alice", expires_at=utcnow() - timedelta(seconds=1), scopes=None)
    reader = await _token(heal, "bob", scopes=["read"])
    async with _client(heal, expired) as client:
        answer = await client.get("/api/v1/incidents")
        assert answer.status_code == 401
        assert answer.json()["detail"].startswith("this token expired at ")
    async with _client(heal, reader) as client:
        assert (await client.get("/api/v1/incidents")).status_code == 200
        narrowed = await client.post(f"/api/v1/approvals/{approval_id}/approve")
        assert narrowed.status_code == 403
        assert narrowed.json()["detail"] == "this token of bob lacks the approve scope"
    async with heal.db.write() as connection:
        alice = await users_repo.by_name(connection, "alice")
        assert alice is not None
        await users_repo.set_disabled(connection, int(alice["id"]), True)
    async with _client(heal, live) as client:
        answer = await client.post(f"/api/v1/approvals/{approval_id}/approve")
        assert answer.status_code == 401
        assert answer.json()["detail"] == "user alice is disabled"
    async with heal.db.write() as connection:
        await users_repo.set_disabled(connection, int(alice["id"]), False)
        assert await users_repo.revoke_tokens(connection, int(alice["id"]), utcnow()) == 2
    async with _client(heal, live) as client:
        answer = await client.get("/api/v1/incidents")
        assert answer.status_code == 401
        assert answer.json()["detail"] == "this token was revoked"
    async with _client(heal, TOKEN) as client:
        detail = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
    assert detail["signatures"] == []


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("plain-secret-token", "HEAL_API_TOKENS entry 2 is not a token hash"),
        ("sha256:abc", "HEAL_API_TOKENS entry 2 is not a token hash"),
        (f"{hash_token('x')}:reed", "unknown scope 'reed'"),
        (f"{hash_token('x')}:approve", "a service token cannot have the approve scope"),
    ],
)
def test_heal_api_tokens_holds_hashes_only(entry: str, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(api_tokens=f"{hash_token('ok')},{entry}")  # type: ignore[arg-type]
    assert says in str(refused.value)
    assert "plain-secret-token" not in str(refused.value)
    scopes = Settings(api_tokens=f"{hash_token('a')},{hash_token('b')}:read+operate")  # type: ignore[arg-type]
    assert sorted(map(sorted, scopes.token_hashes().values())) == [
        ["ingest"],
        ["operate", "read"],
    ]
