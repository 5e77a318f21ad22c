"""heal policy / token / db / incidents / actions, through the real command line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cli_support import heal_cli, isolate, populate, sqlite_url
from helpers import alert, policy_text

from heal.settings import hash_token
from heal.store import migrate

BAD_POLICY = """\
actions:
  open-ticket:
    type: http
    timeout: 5
    nodes: []
rules:
  - name: r
    actions: [{action: open-ticket}]
"""


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path)


@pytest.fixture
def populated(db_url: str) -> str:
    """Two incidents: checkout (two alerts, one action) and payments (one alert, one action)."""
    populate(db_url, [alert(), alert(instance="b"), alert(service="payments")])
    return db_url


# -- policy --------------------------------------------------------------------------------


def test_policy_check_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "heal.yaml"
    policy.write_text(policy_text("http://itsm.example"))
    result = heal_cli("policy", "check", str(policy))
    assert result.exit_code == 0, result.output
    assert "OK: 1 rules, 1 actions" in result.output
    # The policy names a secret whose variable is not set: a note, not a failure.
    assert "HEAL_TEST_ITSM_TOKEN" in result.output
    monkeypatch.setenv("HEAL_TEST_ITSM_TOKEN", "x")
    assert "HEAL_TEST_ITSM_TOKEN" not in heal_cli("policy", "check", str(policy)).output


def test_policy_check_reports_every_problem_with_its_position(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(BAD_POLICY)
    result = heal_cli("policy", "check", str(policy))
    assert result.exit_code == 2
    assert f"{policy}:4:5 (actions.open-ticket.timeout):" in result.output
    assert f"{policy}:5:5 (actions.open-ticket.nodes):" in result.output
    assert "Traceback" not in result.output


def test_policy_check_catches_a_misspelt_template_name(tmp_path: Path) -> None:
    policy = tmp_path / "heal.yaml"
    text = policy_text("http://itsm.example")
    assert "{{ settings.itsm_url }}" in text
    policy.write_text(text.replace("{{ settings.itsm_url }}", "{{ setings.itsm_url }}", 1))
    result = heal_cli("policy", "check", str(policy))
    assert result.exit_code == 2
    line = next(
        number
        for number, content in enumerate(policy.read_text().splitlines(), 1)
        if "setings" in content
    )
    assert f"{policy}:{line}:" in result.output
    assert "unknown name 'setings' in template — did you mean 'settings'?" in result.output
    assert "OK" not in result.output


def test_policy_check_of_an_empty_file(tmp_path: Path) -> None:
    policy = tmp_path / "heal.yaml"
    policy.write_text("# nothing yet\n")
    result = heal_cli("policy", "check", str(policy))
    assert result.exit_code == 2
    assert f"{policy}:1:1: the policy is empty" in result.output


def test_policy_check_of_a_missing_file(tmp_path: Path) -> None:
    result = heal_cli("policy", "check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_policy_check_of_the_bundled_demo_policy() -> None:
    demo = Path(__file__).parents[2] / "src" / "heal" / "demo" / "policy.yaml"
    result = heal_cli("policy", "check", str(demo))
    assert result.exit_code == 0, result.output
    assert "OK: 2 rules, 2 actions" in result.output


def test_policy_schema_is_json_schema() -> None:
    result = heal_cli("policy", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "heal policy"
    assert {"actions", "rules", "settings"} <= set(schema["properties"])


def test_policy_types_lists_every_installed_type() -> None:
    result = heal_cli("policy", "types", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    names = [t["name"] for t in listed["types"]]
    assert names == ["http", "kubernetes", "stackstorm", "ssh", "local", "notify"]
    assert listed["failed_to_load"] == []
    table = heal_cli("policy", "types")
    assert "restart, scale or roll back a workload" in table.output


# -- token ---------------------------------------------------------------------------------


def test_token_new_prints_a_token_and_its_hash() -> None:
    result = heal_cli("token", "new")
    assert result.exit_code == 0
    printed = dict(
        line.split(":", 1)
        for line in result.stdout.splitlines()
        if line.startswith(("token:", "hash:"))
    )
    token, digest = printed["token"].strip(), printed["hash"].strip()
    assert len(token) >= 40
    assert digest == hash_token(token)
    assert "HEAL_API_TOKENS" in result.output
    assert heal_cli("token", "new").stdout != result.stdout


# -- db ------------------------------------------------------------------------------------


def test_db_upgrade_then_current(db_url: str, tmp_path: Path) -> None:
    head = migrate.head_revision()
    assert head is not None
    result = heal_cli("db", "upgrade", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert f"upgraded from an empty database to {head}" in result.output
    current = heal_cli("db", "current", "--database-url", db_url)
    assert current.exit_code == 0
    assert f"current: {head}" in current.output
    assert "up to date" in current.output
    again = heal_cli("db", "upgrade", "--database-url", db_url)
    assert f"already at {head}" in again.output


def test_db_current_reads_heal_database_url_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEAL_DATABASE_URL", sqlite_url(tmp_path, "env.db"))
    result = heal_cli("db", "current")
    assert result.exit_code == 0
    assert "current: none" in result.output
    assert "heal db upgrade" in result.output
    assert not (tmp_path / "env.db").exists()


def test_db_upgrade_of_an_unreachable_database() -> None:
    result = heal_cli(
        "db", "upgrade", "--database-url", "postgresql+psycopg://heal:secret@127.0.0.1:1/heal"
    )
    assert result.exit_code == 1
    assert "database error at postgresql+psycopg://heal:***@127.0.0.1:1/heal" in result.output
    assert "secret" not in result.output
    assert "Traceback" not in result.output


# -- incidents -----------------------------------------------------------------------------


def test_incidents_list(populated: str) -> None:
    result = heal_cli("incidents", "list", "--database-url", populated)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    checkout = next(line for line in lines if "service=checkout" in line)
    payments = next(line for line in lines if "service=payments" in line)
    assert lines.index(payments) < lines.index(checkout)  # newest first
    for line in (checkout, payments):
        assert "open" in line
        assert "critical" in line
        assert "1 received" in line
    limited = heal_cli("incidents", "list", "--limit", "1", "--database-url", populated)
    assert "service=payments" in limited.output
    assert "service=checkout" not in limited.output
    resolved = heal_cli("incidents", "list", "--status", "resolved", "--database-url", populated)
    assert resolved.exit_code == 0
    assert "no incidents with status resolved" in resolved.output
    assert heal_cli("incidents", "list", "--status", "burning").exit_code == 2


def test_incidents_show(populated: str) -> None:
    result = heal_cli("incidents", "show", "1", "--database-url", populated)
    assert result.exit_code == 0, result.output
    output = result.output
    assert "Incident 1: CheckoutDown (service=checkout)" in output
    assert "checkout-down" in output
    assert "Alerts (2)" in output
    assert "instance=b" in output
    assert "Actions (1)" in output
    assert "open-ticket" in output
    for kind in ("incident.opened", "alert.received", "action.created", "action.joined"):
        assert kind in output


def test_incidents_show_unknown_id(populated: str) -> None:
    result = heal_cli("incidents", "show", "99", "--database-url", populated)
    assert result.exit_code == 1
    assert "incident 99 not found" in result.output


def test_incidents_without_a_database_or_schema_say_what_to_do(db_url: str, tmp_path: Path) -> None:
    missing = heal_cli("incidents", "list", "--database-url", db_url)
    assert missing.exit_code == 1
    assert "no heal database at" in missing.output
    assert "heal db upgrade" in missing.output
    assert not (tmp_path / "heal.db").exists()

    sqlite3.connect(tmp_path / "heal.db").close()  # a database, but never migrated
    for command in (("incidents", "list"), ("incidents", "show", "1"), ("actions", "show", "1")):
        result = heal_cli(*command, "--database-url", db_url)
        assert result.exit_code == 1, command
        assert "has no heal schema yet" in result.output
        assert "heal db upgrade" in result.output
        assert "Traceback" not in result.output


# -- actions -------------------------------------------------------------------------------


def test_actions_cancel_then_show(populated: str) -> None:
    result = heal_cli(
        "actions", "cancel", "1", "--reason", "not today", "--database-url", populated
    )
    assert result.exit_code == 0, result.output
    assert "action 1 cancelled" in result.output
    assert "failure/user_abort" in result.output

    shown = heal_cli("actions", "show", "1", "--database-url", populated)
    assert shown.exit_code == 0, shown.output
    assert "failure" in shown.output
    assert "user_abort" in shown.output
    assert "cancelled by cli:" in shown.output
    assert "not today" in shown.output
    assert "action.status" in shown.output

    again = heal_cli("actions", "cancel", "1", "--database-url", populated)
    assert again.exit_code == 1
    assert "already finished with status failure" in again.output

    other = heal_cli("actions", "show", "2", "--database-url", populated)
    assert "received" in other.output  # the other incident's action is untouched


def test_actions_unknown_id(populated: str) -> None:
    for command in ("show", "cancel"):
        result = heal_cli("actions", command, "42", "--database-url", populated)
        assert result.exit_code == 1
        assert "action 42 not found" in result.output


def test_db_migrate_to_an_empty_database(populated: str, tmp_path: Path) -> None:
    target = sqlite_url(tmp_path, "moved.db")
    result = heal_cli("db", "migrate-to", target, "--database-url", populated)
    assert result.exit_code == 0, result.output
    assert "incidents: 2 rows" in result.output
    assert "actions: 2 rows" in result.output
    assert "in-flight actions given a wake on the target: 2" in result.output
    moved = heal_cli("incidents", "list", "--database-url", target)
    assert "service=payments" in moved.output
    again = heal_cli("db", "migrate-to", target, "--database-url", populated)
    assert again.exit_code == 2
    assert "already holds heal data: incidents (2)" in again.output
    assert "--force" in again.output
    assert "Traceback" not in again.output
    forced = heal_cli("db", "migrate-to", target, "--database-url", populated, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    summary = json.loads(forced.output)
    assert summary["tables"]["incidents"] == summary["tables"]["actions"] == 2
    assert set(summary["tables"]) >= {"users", "approvals", "notifications", "timeline"}
