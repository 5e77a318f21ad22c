"""Operator runbooks as knowledge-base entries: Markdown files found under directories,
cut into one entry per ``##`` section.

A section is about one problem, so a hit carries the few paragraphs that matter instead of
a whole file; each is titled "<document title>: <section>", so the document's title still
counts for every section. Pure text and file reading; the database is the caller's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from heal.store import knowledge_repo as repo

RUNBOOK_SUFFIXES = (".md", ".markdown")
MAX_RUNBOOK_BYTES = 1024 * 1024
MAX_REF = 1000
MAX_ANCHOR = 100  # a heading's slug is cut here, so that path and anchor fit in a ref
MAX_TITLE = 500
# Part of every runbook's content hash: a change to how files are cut into sections
# re-indexes them all once.
SECTIONING = "sections-v1"


class RunbookProblem(Exception):
    """A runbook that cannot be indexed, in a few words."""


@dataclass(frozen=True, slots=True)
class Section:
    """One ``##`` section of a runbook (``anchor`` "": the text before the first one)."""

    anchor: str
    heading: str
    text: str


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


def read_runbook(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_RUNBOOK_BYTES:
            raise RunbookProblem(f"larger than {MAX_RUNBOOK_BYTES // 1024} KiB")
        return path.read_bytes()
    except OSError as error:
        raise RunbookProblem(f"cannot read: {error.strerror or error}") from error


def runbook_files(dirs: Sequence[str], warnings: list[str]) -> list[tuple[str, Path]]:
    """(source, path) of every Markdown file under ``dirs``, each once, in name order; the
    source is the file's absolute path. Hidden files and directories (.git) are not
    runbooks, nor walked into."""
    files: dict[str, Path] = {}
    for directory in dirs:
        base = Path(absolute(directory))
        if not base.is_dir():
            warnings.append(f"{directory}: no such directory")
            continue
        for folder, subfolders, names in os.walk(base):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            for name in names:
                path = Path(folder) / name
                if name.startswith(".") or path.suffix.lower() not in RUNBOOK_SUFFIXES:
                    continue
                source = path.as_posix()
                if not _storable(source):
                    warnings.append(f"{shown(source)!a}: the file name is not UTF-8")
                elif path.is_file():
                    files.setdefault(source, path)
    return sorted(files.items())


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")  # a name the OS could not decode holds surrogates
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def absolute(path: str | Path) -> str:
    # Not resolve(): a symlinked directory keeps the name people gave it.
    return PurePath(os.path.abspath(Path(path).expanduser())).as_posix()


def shown(path: str) -> str:
    """A stored path as people see it: relative to the working directory when inside it."""
    try:
        return PurePath(path).relative_to(PurePath(os.getcwd())).as_posix()
    except ValueError:
        return path


def under(source: str, root: str) -> bool:
    return PurePath(source).is_relative_to(PurePath(root))
