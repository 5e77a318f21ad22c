"""The knowledge base: past remediations with their verified outcome, and operator runbooks,
searched by full text (``heal.store.knowledge_repo``) for the LLM's prompt and for people
(``heal kb search``).

A runbook is indexed per ``##`` section, each entry titled "<document title>: <section>":
a section is about one problem, so a hit carries the few paragraphs that matter instead of
a whole file, and the document's title still counts for every section. A file whose bytes
did not change since the last indexing is skipped; one that disappeared loses its
entries; one that cannot be read or parsed is a one-line warning and keeps what it had.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.decide.tiers import KnowledgeHit
from heal.observability.logging import get_logger
from heal.store import knowledge_repo as repo
from heal.store.db import Database

log = get_logger("heal.decide")

RUNBOOK_SUFFIXES = (".md", ".markdown")
MAX_RUNBOOK_BYTES = 1024 * 1024
MAX_REF = 1000
MAX_ANCHOR = 100  # a heading's slug is cut here, so that path and anchor fit in a ref
MAX_TITLE = 500
HIT_TEXT = 2000  # characters of an entry a hit carries: enough for a prompt, not a book
# Part of every runbook's content hash: a change to how files are cut into sections
# re-indexes them all once.
SECTIONING = "sections-v1"

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


@dataclass(frozen=True, slots=True)
class Section:
    """One ``##`` section of a runbook (``anchor`` "": the text before the first one)."""

    anchor: str
    heading: str
    text: str


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
        roots = [_absolute(directory) for directory in given]
        files = _runbook_files(given, report.warnings)
        report.files = len(files)
        async with self.database.read() as connection:
            known = await repo.source_hashes(connection, repo.RUNBOOK)
        kept: set[str] = set()
        for done, (source, path) in enumerate(files, start=1):
            kept.add(source)  # a file that fails to read keeps its old entries
            await self._index_file(source, path, known.get(source), report)
            if progress is not None:
                progress(done, len(files))
        gone = [s for s in known if s not in kept and any(_under(s, r) for r in roots)]
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
            data = await asyncio.to_thread(_read_runbook, path)
            digest = content_hash(SECTIONING.encode(), data)
            if known == {digest}:
                report.unchanged += 1
                return
            entries = runbook_entries(source, data.decode("utf-8"), digest)
        except RunbookProblem as problem:
            report.warnings.append(f"{shown(source)}: {problem}")
            return
        except UnicodeDecodeError as error:
            report.warnings.append(f"{shown(source)}: not UTF-8 text (byte {error.start})")
            return
        async with self.database.write() as connection:
            await repo.replace_source(connection, repo.RUNBOOK, source, entries, _now())
        report.sections += len(entries)
        if known is None:
            report.added += 1
        else:
            report.changed += 1


class RunbookProblem(Exception):
    """A runbook that cannot be indexed, in a few words."""


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
    entry["content_hash"] = content_hash(json.dumps(entry, sort_keys=True, default=str).encode())
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


# -- runbooks -------------------------------------------------------------------------------
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,2})\s+(.+?)(?:\s+#+)?\s*$")
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*(\n|\Z)", re.DOTALL)


def runbook_entries(source: str, markdown: str, digest: str) -> list[dict[str, Any]]:
    """The rows of one runbook: one per section with text, or one for the whole file."""
    if len(source) + len("#-999") + MAX_ANCHOR > MAX_REF:
        raise RunbookProblem(f"path longer than {MAX_REF - MAX_ANCHOR - 5} characters")
    title, parts = sections(markdown, fallback_title=PurePath(source).stem)
    kept = [part for part in parts if part.text] or [Section("", "", "")]
    return [
        {
            "kind": repo.RUNBOOK,
            "ref": f"{source}#{part.anchor}" if part.anchor else source,
            "source": source,
            "title": (f"{title}: {part.heading}" if part.heading else title)[:MAX_TITLE],
            "body": part.text,
            "symptoms": {},
            "action": None,
            "params": {},
            "outcome": None,
            "effectiveness": None,
            "seconds_to_resolve": None,
            "content_hash": digest,
        }
        for part in kept
    ]


def sections(markdown: str, fallback_title: str) -> tuple[str, list[Section]]:
    """The document's title (its first ``#`` heading, else ``fallback_title``) and its
    sections, cut at each ``##`` heading outside code fences (deeper headings stay in
    their section). Anchors are GitHub's: "Disk full!" is "disk-full", a repeat "-1"."""
    # NUL is no text to PostgreSQL; an editor's stray one is dropped.
    markdown = markdown.replace("\r\n", "\n").replace("\x00", "")
    markdown = _FRONT_MATTER.sub("", markdown, count=1)
    title: str | None = None
    heading, anchor = "", ""
    lines: list[str] = []
    found: list[Section] = []
    anchors: dict[str, int] = {}
    fenced = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match and match.group(1) == "#" and title is None:
            title = match.group(2)
            continue
        if match and match.group(1) == "##":
            found.append(Section(anchor, heading, "\n".join(lines).strip()))
            heading, anchor, lines = match.group(2), _anchor(match.group(2), anchors), []
            continue
        lines.append(line)
    found.append(Section(anchor, heading, "\n".join(lines).strip()))
    return title or fallback_title.replace("-", " ").replace("_", " "), found


def _anchor(heading: str, seen: dict[str, int]) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-") or "section"
    slug = slug[:MAX_ANCHOR]
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return f"{slug}-{count}" if count else slug


def content_hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return "sha256:" + digest.hexdigest()


def _read_runbook(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_RUNBOOK_BYTES:
            raise RunbookProblem(f"larger than {MAX_RUNBOOK_BYTES // 1024} KiB")
        return path.read_bytes()
    except OSError as error:
        raise RunbookProblem(f"cannot read: {error.strerror or error}") from error


def _runbook_files(dirs: Sequence[str], warnings: list[str]) -> list[tuple[str, Path]]:
    """(source, path) of every Markdown file under ``dirs``, each once, in name order;
    hidden files and directories (.git) are not runbooks."""
    files: dict[str, Path] = {}
    for directory in dirs:
        base = Path(_absolute(directory))
        if not base.is_dir():
            warnings.append(f"{directory}: no such directory")
            continue
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(base)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if path.suffix.lower() in RUNBOOK_SUFFIXES and path.is_file():
                source = (base / relative).as_posix()
                if _storable(source):
                    files.setdefault(source, path)
                else:
                    warnings.append(f"{shown(source)!a}: the file name is not UTF-8")
    return sorted(files.items())


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")  # a name the OS could not decode holds surrogates
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _absolute(path: str | Path) -> str:
    # Not resolve(): a symlinked directory keeps the name people gave it.
    return PurePath(os.path.abspath(Path(path).expanduser())).as_posix()


def shown(path: str) -> str:
    """A stored path as people see it: relative to the working directory when inside it."""
    try:
        return PurePath(path).relative_to(PurePath(os.getcwd())).as_posix()
    except ValueError:
        return path


def _under(source: str, root: str) -> bool:
    return PurePath(source).is_relative_to(PurePath(root))


def _display_ref(row: Mapping[str, Any]) -> str:
    ref = str(row["ref"])
    if row["kind"] == repo.REMEDIATION:
        return ref.replace("incident:", "incident ", 1)
    return shown(ref)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + " …"


def _now() -> datetime:
    return datetime.now(UTC)
