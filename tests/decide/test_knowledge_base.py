"""The knowledge base: remediations and runbooks found by the words an alert or a person
uses, on SQLite (FTS5) and PostgreSQL (tsvector), whatever those words contain."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from heal.decide.knowledge import (
    KnowledgeBase,
    RemediationSummary,
    record_remediation,
    remediation_entry,
)
from heal.decide.runbooks import sections
from heal.decide.tiers import KnowledgeSearch
from heal.domain.redaction import Redactor
from heal.store import knowledge_repo, migrate, transfer
from heal.store.db import Database
from heal.store.tables import knowledge_entries

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)

CRASH = RemediationSummary(
    incident_id=7,
    title="KubePodCrashLooping (namespace=shop)",
    action="restart-workload",
    labels={
        "alertname": "KubePodCrashLooping",
        "namespace": "shop",
        "deployment": "web",
        "pod": "web-7d9f-x2",
    },
    annotations={"summary": "pod web is crash looping after the config change"},
    params={"namespace": "shop", "name": "web"},
    outcome="verified",
    effectiveness=5,
    seconds_to_resolve=240,
)
DISK = RemediationSummary(
    incident_id=8,
    title="NodeDiskFull",
    action="clean-logs",
    labels={"alertname": "NodeDiskFull", "service": "db"},
    annotations={"description": "the root filesystem is 97% full"},
    outcome="ineffective",
    effectiveness=1,
    seconds_to_resolve=3900,
)

DISK_RUNBOOK = """\
---
owner: sre
---
# Disk runbook

Applies to every node.

## Disk full

Delete rotated logs: `journalctl --vacuum-size=500M`.

```
## this is shell output, not a heading
```

## Inode exhaustion

Millions of small files; find the directory holding them.

## Disk full
Second section of the same name.
"""

HOSTILE = [
    "",
    '"',
    "'",
    '"unterminated',
    "disk\"full'",
    "AND",
    "OR NOT",
    "NEAR(disk full, 2)",
    "title:disk",
    "disk*",
    "-disk",
    "^disk",
    "(disk",
    "disk)",
    "!disk & | <-> :*",
    "disk:* & !!full",
    "\\",
    "%_",
    "{namespace: shop}",
    "😀 ünïcödé ß",
    "a" * 5000,
    " ".join(["word"] * 500),
    "\x00null",
    "DROP TABLE knowledge_entries; --",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Database]:
    """A migrated database with an empty knowledge base."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    await migrate.upgrade(db)
    async with db.write() as connection:
        await connection.execute(delete(knowledge_entries))
    yield db
    await db.dispose()


async def _record(db: Database, *summaries: RemediationSummary) -> None:
    async with db.write() as connection:
        for summary in summaries:
            await record_remediation(connection, summary, NOW)


def _runbooks(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


async def _count(db: Database) -> int:
    async with db.read() as connection:
        result = await connection.execute(select(func.count()).select_from(knowledge_entries))
        return int(result.scalar_one())


# -- remediations ---------------------------------------------------------------------------


def test_a_remediation_reads_as_what_happened() -> None:
    entry = remediation_entry(CRASH)
    assert entry["title"] == "KubePodCrashLooping in shop/web: restart-workload"
    first_line = entry["body"].splitlines()[0]
    assert first_line == (
        "KubePodCrashLooping in shop/web: restart-workload {namespace: shop, name: web} "
        "verified, effectiveness 5, resolved in 4 min"
    )
    assert "summary: pod web is crash looping after the config change" in entry["body"]
    assert entry["ref"] == "incident:7"
    assert entry["symptoms"]["labels"]["pod"] == "web-7d9f-x2"
    assert (entry["action"], entry["params"]) == ("restart-workload", CRASH.params)
    assert (entry["effectiveness"], entry["seconds_to_resolve"]) == (5, 240)
    later = remediation_entry(DISK)
    assert "ineffective, effectiveness 1, resolved in 1 h 5 min" in later["body"]


async def test_a_recorded_remediation_is_found_by_the_alerts_words(database: Database) -> None:
    await _record(database, CRASH, DISK)
    kb: KnowledgeSearch = KnowledgeBase(database)  # what the LLM tier holds (mypy checks)
    hits = await kb.search("pod crash looping in namespace shop", 5)
    assert [hit.ref for hit in hits][:1] == ["incident 7"]
    (crash,) = [hit for hit in hits if hit.ref == "incident 7"]
    assert crash.kind == "remediation"
    assert crash.title == "KubePodCrashLooping in shop/web: restart-workload"
    assert "verified, effectiveness 5" in crash.text
    assert crash.score > 0
    disk = await kb.search("root filesystem full", 5)
    assert [hit.ref for hit in disk] == ["incident 8"]
    assert await kb.search("kafka consumer lag", 5) == []


async def test_recording_again_rewrites_the_one_entry(database: Database) -> None:
    await _record(database, CRASH)
    async with database.write() as connection:
        assert not await record_remediation(connection, CRASH, NOW)  # unchanged: no write
        relapsed = RemediationSummary(
            **{**_fields(CRASH), "outcome": "relapsed", "effectiveness": 2}
        )
        assert await record_remediation(connection, relapsed, NOW)
    assert await _count(database) == 1
    kb = KnowledgeBase(database)
    (hit,) = await kb.search("relapsed", 5)
    assert "relapsed, effectiveness 2" in hit.text
    assert await kb.search("verified", 5) == []  # the old text left the index too
    async with database.read() as connection:
        row = await knowledge_repo.get(connection, "incident:7")
    assert row is not None
    assert (row["outcome"], row["effectiveness"]) == ("relapsed", 2)


def _fields(summary: RemediationSummary) -> dict[str, object]:
    return {name: getattr(summary, name) for name in summary.__dataclass_fields__}


async def test_secrets_never_reach_the_entry(database: Database) -> None:
    leaky = RemediationSummary(
        **{**_fields(CRASH), "annotations": {"runbook": "https://x?token=hunter2-secret"}}
    )
    async with database.write() as connection:
        await record_remediation(connection, leaky, NOW, Redactor(["hunter2-secret"]))
    async with database.read() as connection:
        row = await knowledge_repo.get(connection, "incident:7")
    assert row is not None
    assert "hunter2-secret" not in repr(row)
    assert await KnowledgeBase(database).search("hunter2", 5) == []


# -- search ---------------------------------------------------------------------------------


async def test_no_query_text_is_ever_query_syntax(database: Database) -> None:
    await _record(database, CRASH, DISK)
    kb = KnowledgeBase(database)
    for query in HOSTILE:
        assert isinstance(await kb.search(query, 5), list), query
    # Operators are plain words; the real words around them still find their entry.
    for query in ['"crash', "crash AND NOT looping", "crash:*", "NEAR(crash)", "crash' --"]:
        assert [hit.ref for hit in await kb.search(query, 5)] == ["incident 7"], query
    assert await kb.search("crash", 0) == []


@given(st.text(max_size=200))
def test_any_text_makes_a_valid_fts5_query(query: str) -> None:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(title, body, tokenize='porter')")
    connection.execute("INSERT INTO t VALUES ('disk full', 'crash looping pod')")
    terms = knowledge_repo.search_terms(query)
    if terms:
        connection.execute("SELECT * FROM t WHERE t MATCH ?", (knowledge_repo.fts5_query(terms),))
    assert len(terms) <= knowledge_repo.MAX_TERMS


async def test_title_words_and_more_words_rank_higher(database: Database) -> None:
    async with database.write() as connection:
        for ref, title, body in [
            ("a", "Certificates", "renew the certificate before expiry; disk is unrelated"),
            ("b", "Disk pressure", "free space on the node"),
            ("c", "Memory", "disk and memory pressure together"),
        ]:
            entry = {
                "kind": "runbook",
                "ref": ref,
                "source": ref,
                "title": title,
                "body": body,
                "symptoms": {},
                "params": {},
                "content_hash": ref,
            }
            await knowledge_repo.upsert(connection, entry, NOW)
    kb = KnowledgeBase(database)
    disk = [hit.ref for hit in await kb.search("disk", 3)]
    assert (disk[0], sorted(disk)) == ("b", ["a", "b", "c"])  # b has it in the title
    both = [hit.ref for hit in await kb.search("memory pressure", 3)]
    assert (both[0], sorted(both)) == ("c", ["b", "c"])  # c has both words
    assert len(await kb.search("disk", 2)) == 2


async def test_search_by_kind(database: Database, tmp_path: Path) -> None:
    await _record(database, DISK)
    kb = KnowledgeBase(database)
    await kb.index_runbooks([_runbooks(tmp_path / "rb", {"disk.md": DISK_RUNBOOK})])
    kinds = {hit.kind for hit in await kb.search("disk full", 10)}
    assert kinds == {"remediation", "runbook"}
    runbooks = await kb.search("disk full", 10, kind="runbook")
    assert runbooks
    assert {hit.kind for hit in runbooks} == {"runbook"}


# -- runbooks -------------------------------------------------------------------------------


def test_a_runbook_is_cut_at_its_level_two_headings() -> None:
    title, parts = sections(DISK_RUNBOOK, fallback_title="disk")
    assert title == "Disk runbook"
    assert [(p.anchor, p.heading) for p in parts] == [
        ("", ""),
        ("disk-full", "Disk full"),
        ("inode-exhaustion", "Inode exhaustion"),
        ("disk-full-1", "Disk full"),
    ]
    assert parts[0].text == "Applies to every node."  # front matter and title left out
    assert "## this is shell output" in parts[1].text  # a fence is not cut
    assert sections("no headings at all", fallback_title="node-down")[0] == "node down"


async def test_runbook_sections_are_found_with_where_they_are(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runbooks(
        tmp_path / "runbooks",
        {
            "disk.md": DISK_RUNBOOK,
            "k8s/crashloop.markdown": "# CrashLoopBackOff\n\n## Restart\nRoll the deployment.\n",
            "notes.txt": "## Disk full\nnot Markdown",
            ".git/disk.md": "# Disk full\nnot a runbook",
        },
    )
    monkeypatch.chdir(tmp_path)
    kb = KnowledgeBase(database)
    report = await kb.index_runbooks(["./runbooks"])
    assert (report.files, report.added, report.sections, report.warnings) == (2, 2, 5, [])
    hits = await kb.search("disk full: rotated logs", 3)
    assert hits[0].ref == "runbooks/disk.md#disk-full"
    assert hits[0].title == "Disk runbook: Disk full"
    assert "journalctl --vacuum-size=500M" in hits[0].text
    (restart,) = await kb.search("crashloopbackoff roll", 5)
    assert restart.ref == "runbooks/k8s/crashloop.markdown#restart"
    assert await kb.search("markdown", 5) == []  # neither notes.txt nor .git/
    # The same files however the directory is named: nothing new, nothing twice.
    again = await kb.index_runbooks([tmp_path / "runbooks" / ".." / "runbooks"])
    assert (again.unchanged, again.added, again.removed) == (2, 0, 0)
    assert await _count(database) == 5


async def test_reindexing_skips_unchanged_files_and_follows_changes(
    database: Database, tmp_path: Path
) -> None:
    root = _runbooks(
        tmp_path / "rb",
        {"disk.md": DISK_RUNBOOK, "dns.md": "# DNS\n## Resolver down\nRestart coredns.\n"},
    )
    kb = KnowledgeBase(database)
    await kb.index_runbooks([root])
    again = await kb.index_runbooks([root])
    assert (again.unchanged, again.added, again.changed, again.sections) == (2, 0, 0, 0)

    (root / "dns.md").write_text("# DNS\n## Resolver down\nScale kube-dns up.\n")
    (root / "disk.md").unlink()
    report = await kb.index_runbooks([root])
    assert (report.changed, report.removed, report.unchanged) == (1, 1, 0)
    assert await kb.search("coredns", 5) == []
    assert [hit.ref for hit in await kb.search("kube-dns", 5)] == [f"{root}/dns.md#resolver-down"]
    assert await kb.search("inode", 5) == []
    assert await _count(database) == 1


async def test_a_bad_runbook_is_a_warning_and_the_rest_is_indexed(
    database: Database, tmp_path: Path
) -> None:
    root = _runbooks(
        tmp_path / "rb",
        {"good.md": "# Good\n## Certificates\nRenew with certbot.\n", "bad.md": b"# \xff\xfe\n"},
    )
    kb = KnowledgeBase(database)
    report = await kb.index_runbooks([root, tmp_path / "missing"])
    assert report.warnings == [
        f"{tmp_path}/missing: no such directory",
        f"{root}/bad.md: not UTF-8 text (byte 2)",
    ]
    assert (report.files, report.added) == (2, 1)
    assert [hit.title for hit in await kb.search("certbot", 5)] == ["Good: Certificates"]


async def test_odd_files_are_indexed_or_warned_of(database: Database, tmp_path: Path) -> None:
    root = _runbooks(
        tmp_path / "rb",
        {
            "long.md": "# Long\n## " + "very long heading " * 60 + "\nRestart the ingester.\n",
            "nul.md": "# Nul\n## Stray\nan editor\x00left a NUL; compact the wal\n",
        },
    )
    (root / os.fsdecode(b"\xff-latin1.md")).write_text("# Latin-1 name\n")
    kb = KnowledgeBase(database)
    report = await kb.index_runbooks([root])
    assert (report.added, len(report.warnings)) == (2, 1)
    assert report.warnings[0].endswith("-latin1.md': the file name is not UTF-8")
    (long,) = await kb.search("ingester", 5)
    assert long.ref == f"{root}/long.md#" + ("very-long-heading-" * 60)[:100]
    (nul,) = await kb.search("compact wal", 5)
    assert "an editorleft a NUL" in nul.text


async def test_a_file_that_turns_bad_keeps_its_entries(database: Database, tmp_path: Path) -> None:
    root = _runbooks(tmp_path / "rb", {"tls.md": "# TLS\n## Expiry\nRenew with certbot.\n"})
    kb = KnowledgeBase(database)
    await kb.index_runbooks([root])
    (root / "tls.md").write_bytes(b"\xff broken by an editor")
    report = await kb.index_runbooks([root])
    assert report.warnings == [f"{root}/tls.md: not UTF-8 text (byte 0)"]
    assert report.removed == 0
    assert len(await kb.search("certbot", 5)) == 1


async def test_indexing_one_directory_leaves_the_others_alone(
    database: Database, tmp_path: Path
) -> None:
    first = _runbooks(tmp_path / "a", {"tls.md": "# TLS\nRenew with certbot.\n"})
    second = _runbooks(tmp_path / "b", {"dns.md": "# DNS\nRestart coredns.\n"})
    kb = KnowledgeBase(database)
    await kb.index_runbooks([first, second])
    (second / "dns.md").unlink()
    await kb.index_runbooks([first])
    assert len(await kb.search("coredns", 5)) == 1  # b was not indexed this time
    await kb.index_runbooks([second])
    assert await kb.search("coredns", 5) == []
    assert len(await kb.search("certbot", 5)) == 1


async def test_progress_is_reported_per_file(database: Database, tmp_path: Path) -> None:
    root = _runbooks(tmp_path / "rb", {f"r{i}.md": f"# R{i}\nbody {i}\n" for i in range(3)})
    seen: list[tuple[int, int]] = []
    await KnowledgeBase(database).index_runbooks(
        [root], lambda done, total: seen.append((done, total))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


# -- moving the database --------------------------------------------------------------------


async def test_a_copied_database_searches_the_same(database: Database, tmp_path: Path) -> None:
    await _record(database, CRASH, DISK)
    await KnowledgeBase(database).index_runbooks(
        [_runbooks(tmp_path / "rb", {"disk.md": DISK_RUNBOOK})]
    )
    target = Database(f"sqlite+aiosqlite:///{tmp_path}/copy.db")
    try:
        await transfer.copy_database(database, target)
        for query in ("crash looping", "inode", "disk full"):
            here = await KnowledgeBase(database).search(query, 10)
            there = await KnowledgeBase(target).search(query, 10)
            # The same entries (their order is each database's ranking).
            assert {hit.ref for hit in there} == {hit.ref for hit in here}, query
            assert there
    finally:
        await target.dispose()
