"""heal alerts send, against a real heal server on a free port."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from cli_support import free_port, heal_cli, isolate, sqlite_url
from helpers import SERVICE_TOKENS, TOKEN

from heal.api.app import create_app
from heal.app import Heal
from heal.cli.alerts import start_of_hour, webhook_body
from heal.demo.runner import demo_policy, listen
from heal.settings import Settings
from heal.store import alerts_repo, incidents_repo


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path)


@pytest.fixture
def heal_url(db_url: str) -> Iterator[str]:
    """heal's API under uvicorn in a thread with its own event loop (no worker: the
    policy's ITSM does not exist, and these tests are about ingest)."""
    heal = Heal.build(
        Settings(database_url=db_url, api_tokens=SERVICE_TOKENS, max_body_bytes=4096),
        demo_policy("http://127.0.0.1:9"),
    )
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(heal, worker=False), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    assert server.started, "heal did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


def _incidents(db_url: str) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        heal = Heal.build(Settings(database_url=db_url))
        try:
            async with heal.db.read() as connection:
                rows = await incidents_repo.page(connection)
                for row in rows:
                    row["alerts"] = await alerts_repo.for_incident(connection, row["id"])
                return rows
        finally:
            await heal.stop()

    return asyncio.run(read())


def test_send_then_resolve_the_same_occurrence(heal_url: str, db_url: str) -> None:
    sent = heal_cli("alerts", "send", "--url", heal_url, "--token", TOKEN, "-l", "service=web")
    assert sent.exit_code == 0, sent.output
    assert "202 Accepted" in sent.output
    assert "incidents opened" in sent.output
    assert "actions created" in sent.output
    # The labels the CLI added (severity) are shown, not sent silently.
    assert "labels sent" in sent.output
    assert "alertname=CheckoutDown, severity=critical, service=web" in sent.output
    [incident] = _incidents(db_url)
    assert incident["status"] == "open"
    assert incident["title"] == "CheckoutDown (service=web)"
    [stored] = incident["alerts"]  # type: ignore[misc]
    assert stored["labels"] == {
        "alertname": "CheckoutDown",
        "severity": "critical",
        "service": "web",
    }
    assert stored["starts_at"] == start_of_hour()

    resolved = heal_cli(
        "alerts", "send", "--url", heal_url, "--token", TOKEN, "-l", "service=web",
        "--status", "resolved",
    )  # fmt: skip
    assert resolved.exit_code == 0, resolved.output
    [incident] = _incidents(db_url)
    assert incident["status"] == "resolved"

    listing = heal_cli("incidents", "list", "--database-url", db_url)
    assert "resolved" in listing.output


def test_token_from_heal_token_and_name_and_annotations(
    heal_url: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEAL_TOKEN", TOKEN)
    sent = heal_cli(
        "alerts", "send", "--url", heal_url, "--name", "DiskFull",
        "--label", "instance=db-1", "--annotation", "summary=disk at 99%",
        "--starts-at", "2026-01-01T10:00:00Z",
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    [incident] = _incidents(db_url)
    assert incident["rule"] == "disk-full"
    [stored] = incident["alerts"]  # type: ignore[misc]
    assert stored["annotations"] == {"summary": "disk at 99%"}
    assert stored["starts_at"] == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_send_a_file_as_is(heal_url: str, db_url: str, tmp_path: Path) -> None:
    body = webhook_body("FromFile", {"service": "files"}, {}, "firing", start_of_hour())
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(body))
    sent = heal_cli("alerts", "send", "--url", heal_url, "--token", TOKEN, "--file", str(payload))
    assert sent.exit_code == 0, sent.output
    [incident] = _incidents(db_url)
    assert incident["title"] == "FromFile"


def test_refusals_print_the_servers_detail(heal_url: str, tmp_path: Path) -> None:
    no_token = heal_cli("alerts", "send", "--url", heal_url)
    assert no_token.exit_code == 1
    assert "401" in no_token.output
    assert "missing or invalid bearer token" in no_token.output
    assert "pass --token or set HEAL_TOKEN" in no_token.output

    wrong = heal_cli("alerts", "send", "--url", heal_url, "--token", "wrong")
    assert wrong.exit_code == 1
    assert "missing or invalid bearer token" in wrong.output

    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"status": "burning", "alerts": []}))
    rejected = heal_cli("alerts", "send", "--url", heal_url, "--token", TOKEN, "-f", str(invalid))
    assert rejected.exit_code == 1
    assert "422" in rejected.output
    assert "status:" in rejected.output

    large = tmp_path / "large.json"
    large.write_text(json.dumps({"padding": "x" * 5000}))
    too_large = heal_cli("alerts", "send", "--url", heal_url, "--token", TOKEN, "-f", str(large))
    assert too_large.exit_code == 1
    assert "413" in too_large.output
    assert "larger than 4096 bytes" in too_large.output


def test_bad_options_exit_2(tmp_path: Path) -> None:
    assert heal_cli("alerts", "send", "--label", "novalue").exit_code == 2
    assert heal_cli("alerts", "send", "--starts-at", "yesterday").exit_code == 2
    assert heal_cli("alerts", "send", "--status", "burning").exit_code == 2
    not_json = tmp_path / "x.json"
    not_json.write_text("{nope")
    result = heal_cli("alerts", "send", "--file", str(not_json))
    assert result.exit_code == 2
    assert "is not JSON" in result.output


def test_send_to_a_closed_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = heal_cli("alerts", "send", "--url", url, "--token", TOKEN)
    assert result.exit_code == 1
    assert f"cannot reach heal at {url}: is `heal serve`/`heal demo` running?" in result.output
    assert "Traceback" not in result.output


def test_webhook_body_is_alertmanager_v4() -> None:
    began = datetime(2026, 3, 1, 9, tzinfo=UTC)
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    firing = webhook_body("X", {"severity": "page"}, {"a": "b"}, "firing", began, now)
    assert firing["version"] == "4"
    assert firing["receiver"] == "heal-cli"
    assert firing["groupLabels"] == {"alertname": "X"}
    [one] = firing["alerts"]
    assert one["labels"] == {"alertname": "X", "severity": "page", "service": "checkout"}
    assert one["startsAt"] == "2026-03-01T09:00:00Z"
    assert one["endsAt"] == "0001-01-01T00:00:00Z"
    resolved = webhook_body("X", {}, {}, "resolved", began, now)
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == "2026-03-01T09:30:00Z"
    assert start_of_hour(datetime(2026, 3, 1, 9, 59, 59, 5, tzinfo=UTC)) == began
