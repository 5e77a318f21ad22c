"""Outcomes and ratings as people see them: the API's action and incident views, the rating
endpoint and its refusals, the CLI's show and rate, and the effectiveness score."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import HealFactory
from helpers import AUTH, Clock
from typer.testing import CliRunner
from uvicorn.config import Config
from verify_support import WITHIN, fire_and_succeed, resolve, verify_policy

from heal.api.app import create_app
from heal.app import Heal
from heal.cli.main import app as cli_app
from heal.demo.itsm import FakeITSM
from heal.settings import hash_token
from heal.store import users_repo

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
runner = CliRunner()


async def _ineffective(make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock) -> Heal:
    heal: Heal = await make_heal(verify_policy(itsm[1]), clock=clock)
    heal.verification.clock = clock
    await fire_and_succeed(heal, clock)
    clock.advance(WITHIN)
    assert await heal.verification.sweep() == 1
    return heal


async def _user(heal: Heal, name: str, role: str) -> str:
    token = f"token-of-{name}"
    async with heal.db.write() as connection:
        user_id = await users_repo.add(connection, name, role, [], heal.engine.clock())
        await users_repo.add_token(connection, user_id, hash_token(token), "t", heal.engine.clock())
    return token


def _client(heal: Heal, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else AUTH
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False)),
        base_url="http://heal",
        headers=headers,
    )


async def test_the_api_shows_the_outcome_and_the_score(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _ineffective(make_heal, itsm, clock)
    async with _client(heal) as client:
        action = (await client.get("/api/v1/actions/1")).json()
        incident = (await client.get("/api/v1/incidents/1")).json()
    assert action["status"] == "success"
    assert action["outcome"] == "ineffective"
    assert action["verification"]["evidence"]["still_firing"][0]["alertname"] == "CheckoutDown"
    assert action["verification"]["outcome_at"] == clock.now.isoformat()
    assert [e["kind"] for e in action["timeline"]].count("action.outcome") == 2
    assert incident["outcome"] == "ineffective"
    assert incident["effectiveness"] == 1
    assert incident["rating"] is None
    assert incident["actions"][0]["outcome"] == "ineffective"
    async with _client(heal) as client:
        scraped = (await client.get("/metrics")).text
    assert (
        'heal_action_outcomes_total{action="open-ticket",outcome="ineffective",'
        'rule="checkout-down"}' in scraped
    )


async def test_a_rating_overrides_the_outcome_and_the_last_one_wins(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _ineffective(make_heal, itsm, clock)
    alice = await _user(heal, "alice", "operator")
    bob = await _user(heal, "bob", "operator")
    async with _client(heal, alice) as client:
        first = await client.post("/api/v1/incidents/1/rating", json={"score": 2})
        assert first.status_code == 200, first.text
        assert first.json()["effectiveness"] == 2
        clock.advance(5)
        again = await client.post(
            "/api/v1/incidents/1/rating", json={"score": 4, "comment": "it did help, slowly"}
        )
        assert again.json()["effectiveness"] == 4
        assert len(again.json()["ratings"]) == 1  # one per person: the second replaced it
    clock.advance(5)
    async with _client(heal, bob) as client:
        latest = (await client.post("/api/v1/incidents/1/rating", json={"score": 3})).json()
    assert latest["effectiveness"] == 3  # the latest rating, whoever gave it
    assert [r["rated_by"] for r in latest["ratings"]] == ["bob", "alice"]
    async with _client(heal) as client:
        incident = (await client.get("/api/v1/incidents/1")).json()
    assert incident["rating"]["rated_by"] == "bob"
    rated = [e for e in incident["timeline"] if e["kind"] == "incident.rated"]
    assert [e["message"] for e in rated][1] == "remediation rated 4/5 by alice: it did help, slowly"


async def test_rating_refusals(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _ineffective(make_heal, itsm, clock)
    viewer = await _user(heal, "victor", "viewer")
    operator = await _user(heal, "olga", "operator")
    async with _client(heal) as client:  # a service token is not a person
        assert (
            await client.post("/api/v1/incidents/1/rating", json={"score": 5})
        ).status_code == 403
    async with _client(heal, viewer) as client:
        refused = await client.post("/api/v1/incidents/1/rating", json={"score": 5})
        assert refused.status_code == 403
    async with _client(heal, operator) as client:
        assert (
            await client.post("/api/v1/incidents/99/rating", json={"score": 5})
        ).status_code == 404
        for bad in (0, 6, "five"):
            answer = await client.post("/api/v1/incidents/1/rating", json={"score": bad})
            assert answer.status_code == 422
    async with _client(heal) as client:
        assert (await client.get("/api/v1/incidents/1")).json()["ratings"] == []


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli_app, list(args))
    return result.exit_code, result.output


async def test_the_cli_shows_outcomes(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _ineffective(make_heal, itsm, clock)
    clock.advance(30)
    await resolve(heal)  # resolved late: 4
    url = heal.settings.database_url
    code, output = await _in_thread("actions", "show", "1", "--database-url", url, "--json")
    assert code == 0, output
    shown = json.loads(output)
    assert shown["outcome"] == "ineffective"
    assert shown["verification"]["on_ineffective"] == "none"
    code, output = await _in_thread("actions", "show", "1", "--database-url", url)
    assert code == 0, output
    assert "outcome" in output
    assert "ineffective at" in output
    code, output = await _in_thread("incidents", "show", "1", "--database-url", url, "--json")
    assert code == 0, output
    shown = json.loads(output)
    assert (shown["outcome"], shown["effectiveness"]) == ("ineffective", 4)
    assert shown["actions"][0]["outcome"] == "ineffective"
    code, output = await _in_thread("incidents", "show", "1", "--database-url", url)
    assert code == 0, output
    assert "4/5 (from the outcome)" in output


async def test_the_cli_says_by_when_a_pending_verdict_is_due(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal: Heal = await make_heal(verify_policy(itsm[1]), clock=clock)
    done = await fire_and_succeed(heal, clock)
    url = heal.settings.database_url
    code, output = await _in_thread("actions", "show", "1", "--database-url", url)
    assert code == 0, output
    due = done["finished_at"] + timedelta(seconds=WITHIN)
    assert f"pending (its alerts must resolve by {due:%Y-%m-%d %H:%M:%S} UTC)" in output
    await resolve(heal)
    heal.verification.clock = clock
    assert await heal.verification.sweep() == 0
    code, output = await _in_thread("actions", "show", "1", "--database-url", url)
    assert "pending (resolved; verified if quiet until" in output


@contextlib.contextmanager
def _serving(heal: Heal) -> Iterator[str]:
    """heal's API under uvicorn in a thread, for the CLI to call."""
    server = uvicorn.Server(
        Config(create_app(heal, manage_lifecycle=False), port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    assert server.started, "heal did not start"
    try:
        (socket,) = [s for srv in server.servers for s in srv.sockets]
        yield f"http://127.0.0.1:{socket.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def test_the_cli_rates_through_the_api_with_the_users_token(
    make_heal: HealFactory, itsm: tuple[FakeITSM, str], clock: Clock
) -> None:
    heal = await _ineffective(make_heal, itsm, clock)
    token = await _user(heal, "alice", "operator")
    with _serving(heal) as url:
        code, output = await _in_thread(
            "incidents", "rate", "1", "5", "--url", url, "--token", token, "--comment", "fixed"
        )
        assert code == 0, output
        assert "incident 1 rated 5/5; effectiveness 5/5" in output
        code, output = await _in_thread(
            "incidents", "rate", "1", "3", "--url", url, "--token", "not-a-token"
        )
        assert code == 1
        assert "refused the token" in output
        code, output = await _in_thread(
            "incidents", "rate", "1", "9", "--url", url, "--token", token
        )
        assert code == 2  # refused before asking heal
    async with _client(heal) as client:
        incident: dict[str, Any] = (await client.get("/api/v1/incidents/1")).json()
    assert incident["rating"]["comment"] == "fixed"
    assert incident["effectiveness"] == 5


async def _in_thread(*args: str) -> tuple[int, str]:
    """The CLI blocks on its HTTP call: run it off the loop that serves heal's database."""
    import asyncio

    return await asyncio.to_thread(_cli, *args)
