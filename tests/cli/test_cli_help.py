"""The CLI a person expects: fast to start, examples and env vars in --help, flags shown as
flags, choices for closed sets, and --json on every list and show command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import heal_cli, isolate, sqlite_url
from helpers import alert, policy_text
from playbook_support import playbook_row
from typer.core import TyperGroup

from heal.app import Heal
from heal.cli.approvals import StatusFilter
from heal.cli.main import COMMANDS, load
from heal.cli.users import RoleName
from heal.domain.approvals import ApprovalStatus, Role
from heal.policy import load_policy_text
from heal.settings import Settings
from heal.store import playbooks_repo

HEAVY = ("fastapi", "sqlalchemy", "procrastinate", "httpx", "uvicorn", "heal.app")
APPROVAL = """
approval:
  enabled: true
  require: {required_signatures: 1, expires_in: 1800}
"""


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def every_command() -> list[tuple[str, ...]]:
    """The path of every runnable command, e.g. ("incidents", "list")."""
    found: list[tuple[str, ...]] = []

    def walk(path: tuple[str, ...], command: object) -> None:
        if isinstance(command, TyperGroup):  # groups nest: `heal users token new`
            for sub, child in command.commands.items():
                walk((*path, sub), child)
        else:
            found.append(path)

    for name in COMMANDS:
        walk((name,), load(name))
    return found


def imported_after(*args: str) -> list[str]:
    """The heavy modules a fresh `heal ARGS` process has imported when it ends."""
    script = (
        "import sys\n"
        "from heal.cli.main import main\n"
        f"sys.argv = ['heal', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(finished.stdout.strip().splitlines()[-1].replace("'", '"')))


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("token", "new")])
def test_light_commands_load_no_server_database_or_queue(args: tuple[str, ...]) -> None:
    assert imported_after(*args) == []


def test_no_commands_help_loads_the_server_database_or_queue() -> None:
    """A command's module imports its heavy parts inside the command, so `--help` (and a
    command refused for bad input) starts at once. One process walks them all."""
    script = (
        "import sys\n"
        "from heal.cli.main import main\n"
        f"for path in {every_command()!r}:\n"
        "    sys.argv = ['heal', *path, '--help']\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert finished.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("path", every_command(), ids=" ".join)
def test_every_command_has_an_example_and_shows_flags_as_flags(path: tuple[str, ...]) -> None:
    result = heal_cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:\n    heal " in result.output or "Examples:\n    HEAL_" in result.output
    assert "<bool>" not in result.output
    if "--database-url" in result.output:
        assert "[env var: HEAL_DATABASE_URL]" in " ".join(result.output.split())
    if path[-1] in ("list", "show"):
        assert "--json" in result.output


def test_groups_and_the_root_help_agree() -> None:
    root = heal_cli("--help")
    assert "Examples:" in root.output
    assert "<bool>" not in root.output
    for name, entry in COMMANDS.items():
        command = load(name)
        assert f"  {name}" in root.output
        if isinstance(command, TyperGroup):
            assert command.help == entry.help
            assert "<bool>" not in heal_cli(name, "--help").output


def test_serve_documents_its_environment_variables() -> None:
    output = " ".join(heal_cli("serve", "--help").output.split())
    for variable in ("HEAL_CONFIG", "HEAL_HOST", "HEAL_PORT", "HEAL_DATABASE_URL"):
        assert f"[env var: {variable}]" in output
    assert "--no-worker API only" in output


def test_closed_sets_are_choices() -> None:
    assert {s.value for s in ApprovalStatus} | {"all"} == {s.value for s in StatusFilter}
    assert {r.label for r in Role} == {r.value for r in RoleName}
    listed = heal_cli("approvals", "list", "--status", "maybe")
    assert listed.exit_code == 2
    assert "'maybe' is not one of 'pending', 'approved'" in listed.output
    added = heal_cli("users", "add", "x", "--role", "boss")
    assert added.exit_code == 2
    assert "'boss' is not one of 'viewer', 'operator', 'approver', 'admin'" in added.output


def _populate(database_url: str) -> None:
    async def work() -> None:
        heal = Heal.build(
            Settings(database_url=database_url),
            load_policy_text(policy_text("http://127.0.0.1:9") + APPROVAL),
        )
        await heal.start(worker=False)
        try:
            await heal.ingest.ingest([alert()])
            async with heal.db.write() as connection:
                await playbooks_repo.insert_playbook(connection, playbook_row(dict(alert().labels)))
        finally:
            await heal.stop()

    asyncio.run(work())


def test_list_and_show_commands_print_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_TEST_ITSM_TOKEN", "unused-token")
    url = sqlite_url(tmp_path)
    assert heal_cli("db", "upgrade", "--database-url", url).exit_code == 0
    _populate(url)
    for setup in (
        ("users", "add", "alice", "--role", "approver"),
        ("users", "token", "new", "alice", "--label", "laptop"),
        ("silences", "add", "alertname=~Disk.*", "--comment", "disks"),
    ):
        assert heal_cli(*setup, "--database-url", url).exit_code == 0
    shown = {}
    for path in every_command():
        if path[-1] not in ("list", "show"):
            continue
        argument = {("users", "token", "list"): ["alice"]}.get(path, [])
        if path[-1] == "show":
            argument = ["1"]
        args = [*path, *argument, "--json", "--database-url", url]
        result = heal_cli(*args)
        assert result.exit_code == 0, (path, result.output)
        shown[path] = json.loads(result.stdout)
    assert shown[("incidents", "list")][0]["actions"] == {"waiting": 1}
    assert shown[("incidents", "show")]["alerts"][0]["labels"]["alertname"] == "CheckoutDown"
    assert shown[("actions", "show")]["timeline"]
    assert shown[("approvals", "list")][0]["status"] == "pending"
    assert shown[("approvals", "show")]["signatures"] == []
    assert shown[("users", "list")][0]["name"] == "alice"
    assert [t["label"] for t in shown[("users", "token", "list")]] == ["laptop"]
    assert shown[("users", "token", "list")][0]["state"] == "live"
    assert shown[("silences", "list")][0]["matchers"] == {"alertname": "=~Disk.*"}
    assert shown[("playbooks", "show")]["action"] == "open-ticket"
    # The columns the README's tour (step 6) walks through, in this order.
    header = heal_cli("approvals", "list", "--database-url", url).output.splitlines()[1]
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == [
        "id", "status", "action", "incident", "risk", "quorum", "expires (UTC)",
    ]  # fmt: skip
    # and the table shows the matcher as typed
    table = heal_cli("silences", "list", "--database-url", url).output
    assert "alertname=~Disk.*" in table
    assert "==~" not in table


def test_a_mistyped_command_gets_a_suggestion() -> None:
    result = heal_cli("incidnts", "list")
    assert result.exit_code == 2
    assert "No such command 'incidnts'. Did you mean 'incidents'?" in result.output
    assert "Did you mean" not in heal_cli("frobnicate").output
