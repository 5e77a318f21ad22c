"""The knowledge base: past remediations with their verified outcome, and operator runbooks
(``heal.decide.runbooks``), searched by full text (``heal.store.knowledge_repo``) for the
LLM's prompt and for people (``heal kb search``).

A runbook file whose bytes did not change since the last indexing is skipped; one that
disappeared loses its entries; one that cannot be read or parsed is a one-line warning and
keeps what it had. A remediation is one entry per incident, rewritten as its outcome
changes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.decide import runbooks
from heal.decide.learning import LearnedRemediation
from heal.decide.tiers import KnowledgeHit
from heal.observability.logging import get_logger
from heal.store import knowledge_repo as repo
from heal.store.db import Database

log = get_logger("heal.decide")

MAX_TITLE = 500
HIT_TEXT = 2000  # characters of an entry a hit carries: enough for a prompt, not a book

# Labels that name where an incident happened, in the order they read best.
_PLACE_LABELS = (
    "cluster",
    "namespace",
    "service",
    "deployment",
    "statefulset",
    "daemonset",
    "workload",
    "job",
)

Progress = Callable[[int, int], None]  # (files done, files in all)


@dataclass(frozen=True, slots=True)
class RemediationSummary:
    """What one incident's remediation was and how it went: the knowledge base's entry
    for it is made from this (``outcome``: verified, ineffective, relapsed or None;
    ``effectiveness``: 1-5 or None while unknown)."""

    incident_id: int
    title: str
    action: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    outcome: str | None = None
    effectiveness: int | None = None
    seconds_to_resolve: float | None = None

    @property
    def alertname(self) -> str:
        return str(self.labels.get("alertname") or self.title)


@dataclass(slots=True)
class IndexReport:
    """What one indexing of runbooks did, per file (``sections``: entries written)."""

    files: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    sections: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "sections": self.sections,
            "warnings": list(self.warnings),
        }


class KnowledgeBase:
    """Search and upkeep of the knowledge base; ``search`` is what the LLM tier uses
    (``heal.decide.tiers.KnowledgeSearch``): read-only, one indexed query."""

    def __init__(self, database: Database, *, hit_text: int = HIT_TEXT) -> None:
        self.database = database
        self.hit_text = hit_text

    async def search(
        self, query: str, limit: int, *, kind: str | None = None
    ) -> list[KnowledgeHit]:
        """The entries best matching any word of ``query`` (free text: an alert's,
        a person's; nothing in it is query syntax), best first."""
        async with self.database.read() as connection:
            rows = await repo.search(connection, query, limit, kind)
        return [self._hit(row) for row in rows]

    def _hit(self, row: Mapping[str, Any]) -> KnowledgeHit:
        return KnowledgeHit(
            kind=row["kind"],
            title=row["title"],
            text=_shorten(row["body"], self.hit_text),
            score=float(row["score"]),
            ref=_display_ref(row),
        )

    async def index_runbooks(
        self, dirs: Iterable[str | Path], progress: Progress | None = None
    ) -> IndexReport:
        """Make the runbook entries from ``dirs`` (searched recursively for Markdown files)
        match the files: new and changed files (re)indexed, unchanged ones skipped, those
        gone from a directory removed. Entries of other directories are left alone.

        Entries know their file by its absolute path (the same file is one source however
        it was named); what people are shown is relative to the working directory."""
        report = IndexReport()
        given = [str(directory) for directory in dirs]
        roots = [runbooks.absolute(directory) for directory in given]
        # A walk of the file system: off the event loop, as the reads are.
        files = await asyncio.to_thread(runbooks.runbook_files, given, report.warnings)
        report.files = len(files)
        async with self.database.read() as connection:
            known = await repo.source_hashes(connection, repo.RUNBOOK)
        kept: set[str] = set()
        for done, (source, path) in enumerate(files, start=1):
            kept.add(source)  # a file that fails to read keeps its old entries
            await self._index_file(source, path, known.get(source), report)
            if progress is not None:
                progress(done, len(files))
        gone = [s for s in known if s not in kept and any(runbooks.under(s, r) for r in roots)]
        if gone:
            async with self.database.write() as connection:
                await repo.delete_sources(connection, repo.RUNBOOK, gone)
            report.removed = len(gone)
        for warning in report.warnings:
            log.warning("runbook not indexed", problem=warning)
        return report

    async def _index_file(
        self, source: str, path: Path, known: set[str] | None, report: IndexReport
    ) -> None:
        try:
            data = await asyncio.to_thread(runbooks.read_runbook, path)
            digest = runbooks.content_hash(runbooks.SECTIONING.encode(), data)
            if known == {digest}:
                report.unchanged += 1
                return
            entries = runbooks.runbook_entries(source, data.decode("utf-8"), digest)
        except runbooks.RunbookProblem as problem:
            report.warnings.append(f"{runbooks.shown(source)}: {problem}")
            return
        except UnicodeDecodeError as error:
            report.warnings.append(f"{runbooks.shown(source)}: not UTF-8 text (byte {error.start})")
            return
        async with self.database.write() as connection:
            await repo.replace_source(connection, repo.RUNBOOK, source, entries, _now())
        report.sections += len(entries)
        if known is None:
            report.added += 1
        else:
            report.changed += 1


async def record_remediation(
    connection: AsyncConnection,
    summary: RemediationSummary,
    now: datetime | None = None,
    redact: Callable[[Any], Any] | None = None,
) -> bool:
    """Write (or rewrite) the knowledge-base entry of the incident's remediation, in the
    caller's transaction; False when it was there unchanged. ``redact``: the process's
    redactor, over everything the entry shows (it is readable through the CLI and API)."""
    entry = remediation_entry(summary)
    if redact is not None:
        for name in ("title", "body", "symptoms", "params"):
            entry[name] = redact(entry[name])
    return await repo.upsert(connection, entry, now or _now())


def remediation_entry(summary: RemediationSummary) -> dict[str, Any]:
    """The row of an incident's remediation, its text written to be found by the words an
    alert or a person would use: "KubePodCrashLooping in shop/web: restart-workload
    {namespace: shop, name: web} verified, effectiveness 5, resolved in 4 min"."""
    title = f"{summary.alertname}{_place(summary.labels)}: {summary.action}"[:MAX_TITLE]
    lines = [f"{title} {_params_text(summary.params)}{_result_text(summary)}".rstrip()]
    words = repo.camel_parts(summary.alertname)
    if len(words) > 1:  # found by "disk full" as well as by NodeDiskFull
        lines.append(f"alert: {' '.join(words).lower()}")
    if summary.title and summary.title != summary.alertname:
        lines.append(f"incident: {summary.title}")
    if summary.labels:
        lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.labels.items())))
    lines.extend(f"{name}: {value}" for name, value in sorted(summary.annotations.items()))
    body = "\n".join(lines)
    symptoms = {
        "alertname": summary.alertname,
        "labels": dict(summary.labels),
        "annotations": dict(summary.annotations),
    }
    seconds = summary.seconds_to_resolve
    entry: dict[str, Any] = {
        "kind": repo.REMEDIATION,
        "ref": f"incident:{summary.incident_id}",
        "source": f"incident:{summary.incident_id}",
        "title": title,
        "body": body,
        "symptoms": symptoms,
        "action": summary.action,
        "params": dict(summary.params),
        "outcome": summary.outcome,
        "effectiveness": summary.effectiveness,
        "seconds_to_resolve": round(seconds) if seconds is not None else None,
    }
    entry["content_hash"] = runbooks.content_hash(
        json.dumps(entry, sort_keys=True, default=str).encode()
    )
    return entry


def _place(labels: Mapping[str, str]) -> str:
    values = [str(labels[name]) for name in _PLACE_LABELS if labels.get(name)]
    return f" in {'/'.join(values)}" if values else ""


def _params_text(params: Mapping[str, Any]) -> str:
    if not params:
        return ""
    return "{" + ", ".join(f"{name}: {value}" for name, value in params.items()) + "}"


def _result_text(summary: RemediationSummary) -> str:
    parts = [summary.outcome or "outcome unknown"]
    if summary.effectiveness is not None:
        parts.append(f"effectiveness {summary.effectiveness}")
    if summary.seconds_to_resolve is not None:
        parts.append(f"resolved in {duration_text(summary.seconds_to_resolve)}")
    return " " + ", ".join(parts)


def duration_text(seconds: float) -> str:
    """A duration as people say it: "45 s", "4 min", "2 h 5 min"."""
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _display_ref(row: Mapping[str, Any]) -> str:
    ref = str(row["ref"])
    if row["kind"] == repo.REMEDIATION:
        return ref.replace("incident:", "incident ", 1)
    return runbooks.shown(ref)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + " …"


def _now() -> datetime:
    return datetime.now(UTC)


def remediation_learner(
    redact: Callable[[Any], Any] | None = None,
) -> Callable[[AsyncConnection, LearnedRemediation], Awaitable[None]]:
    """The learning sweep's learner that keeps the knowledge base's entry of each learned
    incident (what was done, how it went), so the LLM's prompt and ``heal kb search`` find
    it next time."""

    async def learn(connection: AsyncConnection, remedy: LearnedRemediation) -> None:
        summary = RemediationSummary(
            incident_id=int(remedy.incident["id"]),
            title=str(remedy.incident.get("title") or ""),
            action=remedy.action_name,
            labels=remedy.labels,
            annotations=remedy.annotations,
            params=remedy.params,
            outcome=remedy.outcome,
            effectiveness=remedy.effectiveness,
            seconds_to_resolve=remedy.resolve_seconds,
        )
        await record_remediation(connection, summary, remedy.now, redact)

    return learn
