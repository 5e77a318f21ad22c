"""heal serve, heal worker and heal demo: start, refuse clearly, stop cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_support import free_port, heal_cli, isolate, sqlite_url
from helpers import SERVICE_TOKENS

from heal.cli.alerts import start_of_hour, webhook_body
from heal.cli.demo import welcome_printer
from heal.demo.runner import (
    DEMO_APPROVER,
    DEMO_APPROVER_TOKEN,
    DEMO_TOKEN,
    DemoInfo,
    listen,
    run_demo,
)
from heal.settings import Settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def test_serve_refuses_a_bad_policy_with_its_problems(tmp_path: Path) -> None:
    policy = tmp_path / "heal.yaml"
    policy.write_text("rules:\n  - name: r\n    actions: [{action: missing}]\n")
    result = heal_cli("serve", "--config", str(policy), "--port", str(free_port()))
    assert result.exit_code == 2
    assert f"{policy}:3:24 (rules.0.actions.0.action): action 'missing'" in result.output
    assert "Traceback" not in result.output


def test_serve_says_when_the_port_is_taken(tmp_path: Path) -> None:
    taken = listen("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        taken.listen()
        result = heal_cli("serve", "--port", str(port), "--database-url", sqlite_url(tmp_path))
    finally:
        taken.close()
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "every API call will be refused (401)" not in result.output
    assert "every API call will be refused with 401" in result.output
    assert "heal token new" in result.output


def test_serve_with_an_unreachable_database() -> None:
    url = "postgresql+psycopg://heal@127.0.0.1:1/heal"
    result = heal_cli("serve", "--port", str(free_port()), "--database-url", url)
    assert result.exit_code == 1
    assert f"database error at {url}" in result.output
    assert "Traceback" not in result.output


def test_worker_needs_the_distributed_runtime(tmp_path: Path) -> None:
    result = heal_cli("worker", "--database-url", sqlite_url(tmp_path))
    assert result.exit_code == 2
    assert "HEAL_RUNTIME=procrastinate" in result.output


@pytest.mark.slow
def test_serve_runs_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HEAL_API_TOKENS": SERVICE_TOKENS,
        "HEAL_DATABASE_URL": sqlite_url(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "heal", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("heal serve did not become ready")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}" in stdout
    assert "heal stopped" in stdout
    assert "Traceback" not in stderr
    assert "401" not in stderr  # a token is configured: no warning


async def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    ready: asyncio.Future[DemoInfo] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    demo = asyncio.create_task(
        run_demo(
            Settings(database_url=sqlite_url(tmp_path)),
            port=0,
            itsm_port=0,
            on_ready=ready.set_result,
            stop=stop,
        )
    )
    info = await asyncio.wait_for(ready, 30)
    assert info.token == DEMO_TOKEN
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    async with httpx.AsyncClient(base_url=info.api_url, headers=headers) as client:
        body = webhook_body("CheckoutDown", {}, {}, "firing", start_of_hour())
        accepted = await client.post("/api/v1/alerts/alertmanager", json=body)
        assert accepted.status_code == 202, accepted.text
        [incident_id] = accepted.json()["incident_ids"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            incident = (await client.get(f"/api/v1/incidents/{incident_id}")).json()
            if incident["actions"][0]["status"] == "success":
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"the demo's action did not succeed: {incident['actions']}")
    kinds = [event["kind"] for event in incident["timeline"]]
    assert kinds.count("node.log") == 2  # ticket created, ticket finished
    assert incident["actions"][0]["outputs"]["sn"].startswith("REQ")
    # `actions show` counts polls as the timeline does ("after 3 polls"), from 1.
    shown = await asyncio.to_thread(
        heal_cli, "actions", "show", str(incident["actions"][0]["id"]),
        "--database-url", sqlite_url(tmp_path),
    )  # fmt: skip
    assert "(after 3 polls)" in shown.output
    assert "attempt / poll  1 / 3" in shown.output

    # The tour's second half: DiskFull waits for a person, who approves as the demo user.
    async with httpx.AsyncClient(base_url=info.api_url, headers=headers) as client:
        body = webhook_body("DiskFull", {"instance": "db-1"}, {}, "firing", start_of_hour())
        accepted = await client.post("/api/v1/alerts/alertmanager", json=body)
        [disk_incident] = accepted.json()["incident_ids"]
        [action] = (await client.get(f"/api/v1/incidents/{disk_incident}")).json()["actions"]
        assert action["status"] == "waiting"
        [pending] = (await client.get("/api/v1/approvals", params={"status": "pending"})).json()[
            "items"
        ]
    # The CLI runs its own event loop, so it runs beside this test's, in a thread.
    result = await asyncio.to_thread(
        heal_cli,
        *("approvals", "approve", str(pending["id"]), "--url", info.api_url),
        *("--token", DEMO_APPROVER_TOKEN),
    )
    assert result.exit_code == 0, result.output
    async with httpx.AsyncClient(base_url=info.api_url, headers=headers) as client:
        signed = (await client.get(f"/api/v1/approvals/{pending['id']}")).json()
        assert [s["signer"] for s in signed["signatures"]] == [DEMO_APPROVER]
    async with httpx.AsyncClient(base_url=info.api_url, headers=headers) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            action = (await client.get(f"/api/v1/actions/{action['id']}")).json()
            if action["status"] == "success":
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"the approved action did not succeed: {action}")
    stop.set()
    await asyncio.wait_for(demo, 30)


def test_demo_welcome_has_copy_paste_commands(capsys: pytest.CaptureFixture[str]) -> None:
    info = DemoInfo("http://127.0.0.1:8080", "http://127.0.0.1:8081", sqlite_url(Path(".")), "t0k")
    welcome_printer(None)(info)
    printed = capsys.readouterr().out
    assert "http://127.0.0.1:8080/docs" in printed
    assert "heal alerts send --token t0k --name CheckoutDown --label service=checkout" in printed
    assert "  heal incidents list\n" in printed
    assert "  heal incidents show 1\n" in printed

    elsewhere = DemoInfo("http://127.0.0.1:9000", "http://127.0.0.1:9001", "sqlite:///x", None)
    welcome_printer("sqlite+aiosqlite:///x.db")(elsewhere)
    printed = capsys.readouterr().out
    assert "--url http://127.0.0.1:9000 --token $HEAL_TOKEN" in printed
    assert "heal incidents show 1 --database-url sqlite+aiosqlite:///x.db" in printed


def test_version() -> None:
    result = heal_cli("--version")
    assert result.exit_code == 0
    assert result.output.startswith("heal ")
