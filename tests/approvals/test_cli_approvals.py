"""Users, approvals and silences from the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from helpers import SERVICE_TOKENS, alert, policy_text
from typer.testing import CliRunner

from heal.api.app import create_app
from heal.app import Heal
from heal.cli.main import app
from heal.demo.runner import listen
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


def _waiting_action(
    db_url: str, labels: dict[str, str] | None = None, policy: str = APPROVAL
) -> tuple[int, int]:
    async def work() -> tuple[int, int]:
        heal = Heal.build(
            Settings(database_url=db_url),
            load_policy_text(policy_text("http://127.0.0.1:9") + policy),
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
    code, output = cli("users", "token", "new", "alice", "--database-url", db_url)
    assert code == 0
    assert "token for alice:" in output
    assert cli("users", "token", "new", "nobody", "--database-url", db_url)[0] == 1


@contextlib.contextmanager
def serving(db_url: str) -> Iterator[str]:
    """heal's API on ``db_url`` under uvicorn in a thread (no worker: nothing runs)."""
    heal = Heal.build(
        Settings(database_url=db_url, api_tokens=SERVICE_TOKENS),
        load_policy_text(policy_text("http://127.0.0.1:9") + APPROVAL),
    )
    sock = listen("127.0.0.1", 0)
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
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def user_token(db_url: str, name: str, role: str, *options: str) -> str:
    """Adds the user (in group sre) and returns a new token of theirs."""
    cli("users", "add", name, "--role", role, "--group", "sre", "--database-url", db_url)
    code, output = cli("users", "token", "new", name, *options, "--database-url", db_url)
    assert code == 0, output
    found = re.search(rf"token for {name}: (\S+)", output)
    assert found, output
    return found.group(1)


def test_approvals_list_show_approve_and_refusals(db_url: str) -> None:
    action_id, approval_id = _waiting_action(db_url)
    alice = user_token(db_url, "alice", "approver")
    vera = user_token(db_url, "vera", "viewer")
    code, output = cli("approvals", "list", "--database-url", db_url)
    assert code == 0
    assert f"│ {approval_id} " in output or str(approval_id) in output
    assert "pending" in output
    with serving(db_url) as url:
        sign = ("approvals", "approve", str(approval_id), "--url", url)
        code, output = cli(*sign, "--token", vera)
        assert code == 3
        assert "refused: vera is a viewer" in output
        code, output = cli(*sign, "--token", "not-a-token")
        assert code == 1
        assert "heal refused the token: missing or invalid bearer token" in output
        code, output = cli(*sign, "--token", alice, "--comment", "ok")
        assert code == 0, output
        assert "approved (1 of 1 signatures); action received" in output
        code, output = cli("approvals", "reject", str(approval_id), "--url", url, "--token", alice)
        assert code == 1
        assert "no longer pending" in output
        assert cli("approvals", "approve", "999", "--url", url, "--token", alice)[0] == 1
    code, output = cli("approvals", "show", str(approval_id), "--database-url", db_url)
    assert "alice" in output
    assert "api" in output
    assert cli("approvals", "show", "999", "--database-url", db_url)[0] == 1
    del action_id


def test_the_cli_signs_with_a_token_never_by_a_name(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, approval_id = _waiting_action(db_url)
    alice = user_token(db_url, "alice", "approver")
    code, output = cli(
        "approvals", "approve", str(approval_id), "--as", "alice", "--database-url", db_url
    )
    assert code == 2
    assert "signing as a name is only for --break-glass" in output
    code, output = cli("approvals", "approve", str(approval_id))
    assert code == 2
    assert "no token: whose signature would this be?" in output
    assert "pending" in cli("approvals", "show", str(approval_id), "--database-url", db_url)[1]
    token_file = tmp_path / "alice.token"
    token_file.write_text(alice + "\n")
    with serving(db_url) as url:
        monkeypatch.setenv("HEAL_URL", url)
        code, output = cli(
            "approvals", "approve", str(approval_id), "--token-file", str(token_file)
        )
    assert code == 0, output
    assert "approved (1 of 1 signatures)" in output


def test_break_glass_signatures_count_as_one(db_url: str) -> None:
    two_people = APPROVAL.replace("required_signatures: 1", "required_signatures: 2")
    _, approval_id = _waiting_action(db_url, policy=two_people)
    for name in ("alice", "bob"):
        cli("users", "add", name, "--role", "approver", "--group", "sre", "--database-url", db_url)
    carol = user_token(db_url, "carol", "approver")
    for name in ("alice", "bob"):
        code, output = cli(
            "approvals", "approve", str(approval_id), "--break-glass", "--as", name,
            "--database-url", db_url,
        )  # fmt: skip
        assert code == 0, output
        assert "pending (1 of 2 signatures); action waiting" in output
    code, output = cli(
        "approvals", "approve", str(approval_id), "--break-glass", "--database-url", db_url
    )
    assert code == 2
    assert "--break-glass needs --as NAME" in output
    _, output = cli("incidents", "show", "1", "--database-url", db_url)
    assert "signed by alice via break-glass (1 of 2)" in output
    assert "signed by bob via break-glass (1 of 2)" in output
    with serving(db_url) as url:
        code, output = cli("approvals", "approve", str(approval_id), "--url", url, "--token", carol)
    assert code == 0, output
    assert "approved (2 of 2 signatures)" in output


def test_users_disable_enable_remove_and_token_lifecycle(db_url: str) -> None:
    _, approval_id = _waiting_action(db_url)
    alice = user_token(db_url, "alice", "approver", "--expires-in", "90d", "--label", "laptop")
    code, output = cli("users", "token", "list", "alice", "--database-url", db_url)
    assert code == 0, output
    assert "laptop" in output
    assert "live" in output
    assert "all of a approver" in output
    with serving(db_url) as url:
        sign = ("approvals", "approve", str(approval_id), "--url", url, "--token", alice)
        assert cli("users", "disable", "alice", "--database-url", db_url)[0] == 0
        assert "disabled" in cli("users", "list", "--database-url", db_url)[1]
        code, output = cli(*sign)
        assert (code, "heal refused the token: user alice is disabled" in output) == (1, True)
        code, output = cli(
            "approvals", "approve", str(approval_id), "--break-glass", "--as", "alice",
            "--database-url", db_url,
        )  # fmt: skip
        assert (code, "refused: user alice is disabled" in output) == (3, True)
        assert cli("users", "enable", "alice", "--database-url", db_url)[0] == 0
        code, output = cli("users", "token", "revoke", "alice", "1", "--database-url", db_url)
        assert (code, output) == (0, "revoked 1 token of alice\n")
        assert "was revoked" in cli("users", "token", "list", "alice", "--database-url", db_url)[1]
        code, output = cli(*sign)
        assert (code, "heal refused the token: this token was revoked" in output) == (1, True)
        assert cli("users", "token", "revoke", "alice", "1", "--database-url", db_url)[0] == 1
        assert cli("users", "token", "revoke", "alice", "--database-url", db_url)[0] == 2
        assert cli("users", "remove", "alice", "--database-url", db_url)[0] == 0
        assert "alice" not in cli("users", "list", "--database-url", db_url)[1]
    assert "pending" in cli("approvals", "show", str(approval_id), "--database-url", db_url)[1]
    code, output = cli(
        "users", "token", "new", "x", "--expires-in", "soon", "--database-url", db_url
    )
    assert code == 2


def test_users_link_keeps_someone_elses_identity_and_names_are_checked(db_url: str) -> None:
    assert cli("db", "upgrade", "--database-url", db_url)[0] == 0
    cli("users", "add", "alice", "--telegram", "1001", "--database-url", db_url)
    cli("users", "add", "bob", "--database-url", db_url)
    code, output = cli("users", "link", "bob", "--telegram", "1001", "--database-url", db_url)
    assert code == 1
    assert "telegram identity 1001 belongs to alice" in output
    assert "--force" in output
    assert cli("users", "add", "carol", "--telegram", "1001", "--database-url", db_url)[0] == 1
    assert "carol" not in cli("users", "list", "--database-url", db_url)[1]
    code, output = cli(
        "users", "link", "bob", "--telegram", "1001", "--force", "--database-url", db_url
    )
    assert code == 0, output
    listed = cli("users", "list", "--database-url", db_url)[1]
    assert next(line for line in listed.splitlines() if "telegram:1001" in line).count("bob") == 1
    for bad in ("Alice", "al ice", "-x", "a" * 65, "heal", "token:abc", ""):
        code, output = cli("users", "add", bad, "--database-url", db_url)
        assert code == 2, (bad, output)
    assert "1-64 characters of a-z" in cli("users", "add", "Alice", "--database-url", db_url)[1]


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
