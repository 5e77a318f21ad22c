"""heal playbooks: list, show, approve, deprecate, edit, delete, export and import."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cli_support import heal_cli, isolate, sqlite_url
from playbook_support import playbook_row

from heal.store import migrate, playbooks_repo
from heal.store.db import Database

CHECKOUT = {"alertname": "CheckoutDown", "namespace": "shop", "deployment": "checkout"}


def _database(url: str, *rows: dict[str, object]) -> None:
    async def work() -> None:
        database = Database(url)
        try:
            await migrate.upgrade(database)
            async with database.write() as connection:
                for row in rows:
                    await playbooks_repo.insert_playbook(connection, row)
        finally:
            await database.dispose()

    asyncio.run(work())


@pytest.fixture
def url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    isolate(monkeypatch, tmp_path)
    database_url = sqlite_url(tmp_path)
    _database(
        database_url,
        playbook_row(CHECKOUT, status="draft", runs=4, successes=3, name="restart checkout"),
        playbook_row({**CHECKOUT, "deployment": "cart"}, action="restart", status="approved"),
    )
    return database_url


def _json(*args: str) -> object:
    result = heal_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_list_and_show(url: str) -> None:
    table = heal_cli("playbooks", "list", "--database-url", url)
    assert table.exit_code == 0, table.output
    assert "restart checkout" in table.output
    assert "draft" in table.output
    approved = _json("playbooks", "list", "--status", "approved", "--database-url", url)
    assert isinstance(approved, list)
    assert [p["action"] for p in approved] == ["restart"]
    shown = heal_cli("playbooks", "show", "1", "--database-url", url)
    assert shown.exit_code == 0, shown.output
    assert "namespace=shop" in shown.output
    assert "3" in shown.output


def test_approve_deprecate_edit_delete(url: str) -> None:
    assert heal_cli("playbooks", "approve", "1", "--database-url", url).exit_code == 0
    first = _json("playbooks", "show", "1", "--database-url", url)
    assert isinstance(first, dict)
    assert first["status"] == "approved"
    edited = _json(
        "playbooks", "edit", "1", "--param", "replicas=3", "--param", "ns=shop",
        "--name", "scale checkout", "--database-url", url,
    )  # fmt: skip
    assert isinstance(edited, dict)
    assert (edited["name"], edited["params"]) == ("scale checkout", {"replicas": 3, "ns": "shop"})
    assert heal_cli("playbooks", "deprecate", "1", "--database-url", url).exit_code == 0
    assert heal_cli("playbooks", "delete", "1", "--yes", "--database-url", url).exit_code == 0
    missing = heal_cli("playbooks", "show", "1", "--database-url", url)
    assert missing.exit_code == 1
    assert "playbook 1 not found" in missing.output
    assert "Traceback" not in missing.output


def test_an_edit_needs_something_to_change(url: str) -> None:
    result = heal_cli("playbooks", "edit", "2", "--database-url", url)
    assert result.exit_code == 1
    assert "nothing to change" in result.output


def test_export_then_import_into_another_database(url: str, tmp_path: Path) -> None:
    exported = tmp_path / "playbooks.yaml"
    result = heal_cli("playbooks", "export", "--output", str(exported), "--database-url", url)
    assert result.exit_code == 0, result.output
    assert "kind: heal/playbooks" in exported.read_text()
    other = sqlite_url(tmp_path, "other.db")
    _database(other)
    counts = _json("playbooks", "import", str(exported), "--database-url", other)
    assert counts == {"created": 2, "updated": 0}
    again = _json("playbooks", "import", str(exported), "--database-url", other)
    assert again == {"created": 0, "updated": 2}
    copied = _json("playbooks", "list", "--database-url", other)
    assert isinstance(copied, list)
    assert [(p["name"], p["runs"], p["verified_successes"]) for p in copied] == [
        ("restart checkout", 4, 3),
        ("CheckoutDown: restart", 1, 1),
    ]


def test_a_file_that_is_not_an_export_is_one_line(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: heal/playbooks\nplaybooks:\n  - {name: x, action: y}\n")
    result = heal_cli("playbooks", "import", str(bad), "--database-url", url)
    assert result.exit_code == 1
    assert "playbook 1: signature: Field required" in result.output
    assert "Traceback" not in result.output
