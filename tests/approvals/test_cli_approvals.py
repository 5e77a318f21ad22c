"""Users, approvals and silences from the terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import alert, policy_text
from typer.testing import CliRunner

from heal.app import Heal
from heal.cli.main import app
from heal.policy import load_policy_text
from heal.settings import Settings
from heal.store import approvals_repo, incidents_repo

runner = CliRunner()
APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 1, approver_groups: [sre], expires_in: 1800}
"""


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("HEAL_TEST_ITSM_TOKEN", "unused-token")
    return f"sqlite+aiosqlite:///{tmp_path}/heal.db"


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _waiting_action(db_url: str, labels: dict[str, str] | None = None) -> tuple[int, int]:
    async def work() -> tuple[int, int]:
        heal = Heal.build(
            Settings(database_url=db_url),
            load_policy_text(policy_text("http://127.0.0.1:9") + APPROVAL),
        )
        await heal.start(worker=False)
        try:
            report = await heal.ingest.ingest([alert(**(labels or {}))])
            async with heal.db.read() as connection:
                if not report.incident_ids:
                    return 0, 0
                # the newest action of the incident (an earlier one may be shielded)
                action = (await incidents_repo.actions_of(connection, report.incident_ids[0]))[-1]
                approval = await approvals_repo.for_action(connection, action["id"])
                return action["id"], approval["id"] if approval else 0
        finally:
            await heal.stop()

    return asyncio.run(work())


def test_users_add_list_token_link(db_url: str) -> None:
    assert cli("db", "upgrade", "--database-url", db_url)[0] == 0
    code, output = cli(
        "users",
        "add",
        "alice",
        "--role",
        "approver",
        "--group",
        "sre",
        "--telegram",
        "1001",
        "--database-url",
        db_url,
    )
    assert code == 0, output
    assert cli("users", "add", "alice", "--database-url", db_url) == (
        1,
        "a user named 'alice' exists already\n",
    )
    assert cli("users", "add", "bob", "--role", "boss", "--database-url", db_url)[0] == 2
    code, output = cli("users", "link", "alice", "--slack", "U42", "--database-url", db_url)
    assert code == 0
    code, output = cli("users", "list", "--database-url", db_url)
    assert "alice" in output
    assert "approver" in output
    assert "telegram:1001" in output
    assert "slack:U42" in output
    code, output = cli("users", "token", "alice", "--database-url", db_url)
    assert code == 0
    assert "token for alice:" in output
    assert cli("users", "token", "nobody", "--database-url", db_url)[0] == 1


def test_approvals_list_show_approve_and_refusals(db_url: str) -> None:
    action_id, approval_id = _waiting_action(db_url)
    cli("users", "add", "alice", "--role", "approver", "--group", "sre", "--database-url", db_url)
    cli("users", "add", "vera", "--role", "viewer", "--database-url", db_url)
    code, output = cli("approvals", "list", "--database-url", db_url)
    assert code == 0
    assert f"│ {approval_id} " in output or str(approval_id) in output
    assert "pending" in output
    code, output = cli(
        "approvals", "approve", str(approval_id), "--as", "vera", "--database-url", db_url
    )
    assert code == 3
    assert "refused: vera is a viewer" in output
    code, output = cli(
        "approvals",
        "approve",
        str(approval_id),
        "--as",
        "alice",
        "--comment",
        "ok",
        "--database-url",
        db_url,
    )
    assert code == 0, output
    assert "approved (1 of 1 signatures); action received" in output
    code, output = cli(
        "approvals", "reject", str(approval_id), "--as", "alice", "--database-url", db_url
    )
    assert code == 1
    assert "no longer pending" in output
    code, output = cli("approvals", "show", str(approval_id), "--database-url", db_url)
    assert "alice" in output
    assert "cli" in output
    assert cli("approvals", "show", "999", "--database-url", db_url)[0] == 1
    assert (
        cli("approvals", "approve", str(approval_id), "--as", "ghost", "--database-url", db_url)[0]
        == 1
    )
    del action_id


def test_silences_add_list_expire_and_shield(db_url: str) -> None:
    assert cli("db", "upgrade", "--database-url", db_url)[0] == 0
    code, output = cli(
        "silences",
        "add",
        "service=checkout",
        "alertname=~Checkout.*",
        "--duration",
        "1h",
        "--comment",
        "deploy",
        "--by",
        "olga",
        "--database-url",
        db_url,
    )
    assert (code, output) == (0, "silence #1 active for 1h\n")
    assert cli("silences", "add", "service", "--comment", "x", "--database-url", db_url)[0] == 2
    assert cli("silences", "add", "a=~(", "--comment", "x", "--database-url", db_url)[0] == 2
    assert (
        cli(
            "silences",
            "add",
            "a=b",
            "--duration",
            "soon",
            "--comment",
            "x",
            "--database-url",
            db_url,
        )[0]
        == 2
    )
    code, output = cli("silences", "list", "--database-url", db_url)
    assert "deploy" in output
    assert "olga" in output
    action_id, approval_id = _waiting_action(db_url)
    assert approval_id == 0  # shielded: no approval asked, no card
    code, output = cli("actions", "show", str(action_id), "--database-url", db_url)
    assert "shield" in output
    assert cli("silences", "expire", "1", "--database-url", db_url)[0] == 0
    assert cli("silences", "expire", "1", "--database-url", db_url)[0] == 1
    _, approval_id = _waiting_action(db_url, {"service": "checkout", "instance": "b"})
    assert approval_id  # once the silence ended, approvals are asked again
