"""heal kb index / heal kb search, through the real command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cli_support import heal_cli, isolate, sqlite_url
from helpers import policy_text

from heal.decide.knowledge import RemediationSummary, record_remediation
from heal.store.db import Database

RUNBOOK = """\
# Disk runbook

## Disk full
Delete rotated logs with `journalctl --vacuum-size=500M`.

## Inode exhaustion
Find the directory holding millions of small files.
"""


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    result = heal_cli("db", "upgrade", "--database-url", url)
    assert result.exit_code == 0, result.output
    return url


@pytest.fixture
def runbooks(tmp_path: Path) -> Path:
    root = tmp_path / "runbooks"
    root.mkdir()
    (root / "disk.md").write_text(RUNBOOK)
    return root


def _record(url: str, summary: RemediationSummary) -> None:
    async def work() -> None:
        database = Database(url)
        try:
            async with database.write() as connection:
                await record_remediation(connection, summary)
        finally:
            await database.dispose()

    asyncio.run(work())


def test_index_then_search(db_url: str, runbooks: Path) -> None:
    result = heal_cli("kb", "index", "--dir", "runbooks", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert (
        "indexed 1 runbook files from runbooks: 1 new, 0 changed, 0 unchanged, 0 removed "
        "(2 sections written)"
    ) in result.output
    again = heal_cli("kb", "index", "--dir", "runbooks", "--database-url", db_url)
    assert "0 new, 0 changed, 1 unchanged" in again.output

    found = heal_cli("kb", "search", "disk full", "--database-url", db_url)
    assert found.exit_code == 0, found.output
    assert "Knowledge base: 2 hits" in found.output
    first = next(line for line in found.output.splitlines() if "runbooks/disk.md" in line)
    assert "Disk runbook: Disk full" in first
    assert "runbooks/disk.md#disk-full" in first
    assert "journalctl --vacuum-size=500M" in first


def test_search_json_and_kinds(db_url: str, runbooks: Path) -> None:
    heal_cli("kb", "index", "--dir", str(runbooks), "--database-url", db_url)
    _record(
        db_url,
        RemediationSummary(
            3,
            "NodeDiskFull",
            "clean-logs",
            {"alertname": "NodeDiskFull", "service": "db"},
            outcome="verified",
            effectiveness=5,
            seconds_to_resolve=90,
        ),
    )
    result = heal_cli("kb", "search", "disk full", "--json", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert {hit["kind"] for hit in hits} == {"remediation", "runbook"}
    (remediation,) = [hit for hit in hits if hit["kind"] == "remediation"]
    assert remediation["ref"] == "incident 3"
    assert remediation["title"] == "NodeDiskFull in db: clean-logs"
    assert "verified, effectiveness 5, resolved in 2 min" in remediation["text"]
    assert set(remediation) == {"kind", "title", "ref", "score", "text"}

    only = heal_cli(
        "kb",
        "search",
        "disk",
        "--kind",
        "remediation",
        "--limit",
        "1",
        "--json",
        "--database-url",
        db_url,
    )
    assert [hit["ref"] for hit in json.loads(only.output)] == ["incident 3"]


def test_search_never_fails_on_what_people_type(db_url: str, runbooks: Path) -> None:
    heal_cli("kb", "index", "--dir", str(runbooks), "--database-url", db_url)
    for query in ['"disk', "disk AND (", "NEAR(", "-", "*:", "'; DROP TABLE x; --"]:
        result = heal_cli("kb", "search", query, "--database-url", db_url)
        assert result.exit_code == 0, (query, result.output)
    assert "nothing found" in heal_cli("kb", "search", "kafka", "--database-url", db_url).output
    dashes = heal_cli("kb", "search", "--json", "--database-url", db_url, "--", "---")
    assert dashes.output == "[]\n"


def test_index_takes_the_policys_dirs(db_url: str, runbooks: Path, tmp_path: Path) -> None:
    policy = tmp_path / "heal.yaml"
    policy.write_text(
        policy_text("http://itsm.example") + "decide:\n  knowledge: {dirs: [runbooks]}\n"
    )
    result = heal_cli("kb", "index", "-c", str(policy), "--json", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == {
        "dirs": ["runbooks"],
        "files": 1,
        "added": 1,
        "changed": 0,
        "unchanged": 0,
        "removed": 0,
        "sections": 2,
        "warnings": [],
    }


def test_index_without_dirs_is_one_line(db_url: str, tmp_path: Path) -> None:
    result = heal_cli("kb", "index", "--database-url", db_url)
    assert result.exit_code == 2
    assert result.output.strip().startswith("no runbook directories: pass --dir")
    assert "Traceback" not in result.output
    policy = tmp_path / "heal.yaml"
    policy.write_text(policy_text("http://itsm.example"))
    none = heal_cli("kb", "index", "-c", str(policy), "--database-url", db_url)
    assert none.exit_code == 2
    assert f"{policy} lists none" in none.output


def test_bad_runbooks_are_warnings(db_url: str, runbooks: Path) -> None:
    (runbooks / "broken.md").write_bytes(b"\xff\xfe")
    result = heal_cli(
        "kb", "index", "--dir", "runbooks", "--dir", "nowhere", "--database-url", db_url
    )
    assert result.exit_code == 0, result.output
    assert "runbooks/broken.md: not UTF-8 text (byte 0)" in result.output
    assert "nowhere: no such directory" in result.output
    assert "indexed 2 runbook files" in result.output


def test_without_a_database(tmp_path: Path) -> None:
    result = heal_cli("kb", "search", "disk", "--database-url", sqlite_url(tmp_path, "none.db"))
    assert result.exit_code == 1
    assert "no heal database at" in result.output


def test_many_files_show_a_progress_bar_on_a_terminal(
    db_url: str, runbooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(25):
        (root / f"r{i:02}.md").write_text(f"# Runbook {i}\n\n## Step\nrestart service {i}\n")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    result = heal_cli("kb", "index", "--dir", "many", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert "indexing runbooks" in result.output
    assert "indexed 25 runbook files" in result.output
    few = heal_cli("kb", "index", "--dir", "runbooks", "--database-url", db_url)
    assert "indexed 1 runbook files" in few.output
    assert "indexing runbooks" not in few.output
