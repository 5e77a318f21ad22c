"""Rows of the knowledge base, and its full-text search on either database.

SQLite: the FTS5 table ``knowledge_fts`` (external content over title and body, porter
stemming, kept in step with knowledge_entries by triggers), ranked by ``bm25`` with the
title weighing four times the body. PostgreSQL: the generated ``tsvector`` column
``search`` (english; title weight A, body B) behind a GIN index, ranked by ``ts_rank_cd``.

A query is never handed to either database's query language: it is cut into words here
(:func:`search_terms`), each word becomes a quoted FTS5 string or a ``plainto_tsquery``,
and the words are OR-ed, so quotes, operators and punctuation from people or alerts are
only text. An entry matching more of the words ranks higher.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import reduce
from typing import Any

from sqlalchemy import ColumnElement, column, delete, func, literal_column, select, table, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.store.tables import SEARCH_COLUMN, SEARCH_TABLE, knowledge_entries

REMEDIATION = "remediation"
RUNBOOK = "runbook"
KINDS = (REMEDIATION, RUNBOOK)

MAX_TERMS = 32  # an alert's whole text as a query: the first words say enough
MAX_TERM_LENGTH = 64
_WORD = re.compile(r"\w+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_TITLE_WEIGHT = 4.0  # bm25's weight of the title column against the body's 1.0

_fts = table(SEARCH_TABLE, column("rowid"))
_search_vector: ColumnElement[Any] = literal_column(f"{knowledge_entries.name}.{SEARCH_COLUMN}")
_ENGLISH: ColumnElement[Any] = literal_column("'english'::regconfig")


def search_terms(query: str) -> list[str]:
    """The words of ``query``, lower-cased, each once, in order: letters, digits and
    underscores only, so nothing in them means anything to a full-text query parser. A
    CamelCase word brings its parts too: "KubePodCrashLooping" also asks for "crash"."""
    terms: list[str] = []
    for word in _WORD.findall(query):
        parts = camel_parts(word)
        for term in [word, *parts] if len(parts) > 1 else [word]:
            term = term.lower()[:MAX_TERM_LENGTH]
            if term not in terms:
                terms.append(term)
            if len(terms) == MAX_TERMS:
                return terms
    return terms


def camel_parts(word: str) -> list[str]:
    """ "KubePodCrashLooping" as ["Kube", "Pod", "Crash", "Looping"], "HTTPErrors5xx" as
    ["HTTP", "Errors", "5", "xx"]: how alert names are written, as the words people use.
    Other scripts have no case to split at: only their underscores cut them."""
    if word.isascii():
        return _CAMEL.findall(word)
    return [part for part in word.split("_") if part]


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: any of the words, each a quoted string (never syntax)."""
    return " OR ".join(f'"{term}"' for term in terms)


def _tsquery(terms: Sequence[str]) -> ColumnElement[Any]:
    # plainto_tsquery reads its argument as plain text whatever it holds; || ORs them.
    parts: list[ColumnElement[Any]] = [func.plainto_tsquery(_ENGLISH, term) for term in terms]
    return reduce(lambda left, right: left.op("||")(right), parts)


async def search(
    connection: AsyncConnection, query: str, limit: int, kind: str | None = None
) -> list[dict[str, Any]]:
    """Entries matching any word of ``query``, best first, each with its ``score``
    (higher is better; comparable within one answer only)."""
    terms = search_terms(query)
    if not terms or limit <= 0:
        return []
    if connection.dialect.name == "postgresql":
        tsquery = _tsquery(terms)
        score: ColumnElement[Any] = func.ts_rank_cd(_search_vector, tsquery)
        statement = select(knowledge_entries, score.label("score")).where(
            _search_vector.op("@@")(tsquery)
        )
    else:
        bm25 = func.bm25(literal_column(SEARCH_TABLE), _TITLE_WEIGHT, 1.0)
        # bm25 is lower for better matches: negated, higher is better as on PostgreSQL.
        score = (-bm25).label("score")
        statement = (
            select(knowledge_entries, score)
            .select_from(knowledge_entries.join(_fts, _fts.c.rowid == knowledge_entries.c.id))
            .where(text(f"{SEARCH_TABLE} MATCH :match").bindparams(match=fts5_query(terms)))
        )
    if kind is not None:
        statement = statement.where(knowledge_entries.c.kind == kind)
    statement = statement.order_by(literal_column("score").desc(), knowledge_entries.c.id)
    result = await connection.execute(statement.limit(limit))
    return [dict(row._mapping) for row in result]


async def upsert(connection: AsyncConnection, entry: dict[str, Any], now: datetime) -> bool:
    """Insert or replace the entry of ``entry["ref"]``; False when it was there unchanged
    (same ``content_hash``), and then nothing is written."""
    result = await connection.execute(
        select(knowledge_entries.c.content_hash).where(knowledge_entries.c.ref == entry["ref"])
    )
    if result.scalar_one_or_none() == entry["content_hash"]:
        return False
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    values = {**entry, "created_at": now, "updated_at": now}
    statement = insert(knowledge_entries).values(values)
    changed = {name: statement.excluded[name] for name in entry if name != "ref"}
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=[knowledge_entries.c.ref],
            set_={**changed, "updated_at": statement.excluded.updated_at},
        )
    )
    return True


async def replace_source(
    connection: AsyncConnection,
    kind: str,
    source: str,
    entries: Iterable[dict[str, Any]],
    now: datetime,
) -> None:
    """Make ``entries`` all that the knowledge base holds from ``source``."""
    await delete_sources(connection, kind, [source])
    rows = [{**entry, "created_at": now, "updated_at": now} for entry in entries]
    if rows:
        await connection.execute(knowledge_entries.insert(), rows)


async def delete_sources(connection: AsyncConnection, kind: str, sources: Sequence[str]) -> int:
    """Remove every entry made from these sources; how many there were."""
    if not sources:
        return 0
    result = await connection.execute(
        delete(knowledge_entries).where(
            knowledge_entries.c.kind == kind, knowledge_entries.c.source.in_(sources)
        )
    )
    return int(result.rowcount or 0)


async def source_hashes(connection: AsyncConnection, kind: str) -> dict[str, set[str]]:
    """Each source of ``kind`` with the content hashes its entries were made from."""
    result = await connection.execute(
        select(knowledge_entries.c.source, knowledge_entries.c.content_hash)
        .where(knowledge_entries.c.kind == kind)
        .distinct()
    )
    hashes: dict[str, set[str]] = {}
    for row in result:
        hashes.setdefault(row.source, set()).add(row.content_hash)
    return hashes


async def get(connection: AsyncConnection, ref: str) -> dict[str, Any] | None:
    result = await connection.execute(
        select(knowledge_entries).where(knowledge_entries.c.ref == ref)
    )
    row = result.first()
    return dict(row._mapping) if row else None


async def rebuild_search_index(connection: AsyncConnection) -> None:
    """Build the full-text index again from the rows (after a bulk copy into the table).
    PostgreSQL's column is generated with each row: nothing to do there."""
    if connection.dialect.name == "sqlite":
        # The table's name is heal's own constant, never input.
        rebuild = f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('rebuild')"  # noqa: S608
        await connection.execute(text(rebuild))
