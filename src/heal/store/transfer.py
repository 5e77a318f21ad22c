"""Move an installation's data to another database (``heal db migrate-to URL``).

The target is migrated to the current schema and must hold no heal data (unless the
caller forces a replacement). Every table of the schema is copied, in foreign-key order
(``metadata.sorted_tables``, so a new table is copied without anyone listing it), in
batches, each table in one transaction, ids kept; PostgreSQL's id sequences are then
moved past the copied ids, the knowledge base's full-text index (not a table of the
schema) is rebuilt on the target, and the row counts of both sides are compared.
In-flight actions keep their deadlines: the caller gives each one a wake on the target's
runtime afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, delete, func, insert, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.store import knowledge_repo, migrate
from heal.store.db import Database
from heal.store.tables import actions, metadata

BATCH = 1000
Row = dict[str, Any]


class TargetNotEmpty(Exception):
    pass


class CountMismatch(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TableCount:
    name: str
    rows: int


Progress = Callable[[str, int], None]  # (table, rows copied so far in it)


def heal_tables() -> list[Table]:
    """Every table of heal's schema, parents before the tables that refer to them."""
    return list(metadata.sorted_tables)


async def count_rows(database: Database) -> list[TableCount]:
    async with database.read() as connection:
        return [
            TableCount(
                table.name,
                (await connection.execute(select(func.count()).select_from(table))).scalar_one(),
            )
            for table in heal_tables()
        ]


async def copy_database(
    source: Database, target: Database, progress: Progress | None = None, *, force: bool = False
) -> list[TableCount]:
    """Copy every heal table from ``source`` to ``target``; the per-table row counts.

    ``force`` deletes the heal data the target holds first; without it such a target is
    refused (:class:`TargetNotEmpty`). Counts that differ afterwards (heal was still
    writing to the source) raise :class:`CountMismatch`.
    """
    await migrate.upgrade(target)
    held = [count for count in await count_rows(target) if count.rows]
    if held and not force:
        tables = ", ".join(f"{count.name} ({count.rows})" for count in held)
        raise TargetNotEmpty(f"the target database already holds heal data: {tables}")
    if held:
        await _empty(target)
    copied = [await _copy_table(source, target, table, progress) for table in heal_tables()]
    async with target.write() as connection:
        await knowledge_repo.rebuild_search_index(connection)
    await _verify(source, target, copied)
    return copied


async def _empty(target: Database) -> None:
    async with target.write() as connection:
        if target.dialect == "postgresql":
            # Wakes of the replaced actions would run against the copied ones' ids.
            exists = await connection.execute(text("SELECT to_regclass('procrastinate_jobs')"))
            if exists.scalar_one() is not None:
                # heal.runtime.distributed.WAKE_TASK; periodic jobs are no action's.
                await connection.execute(
                    text("DELETE FROM procrastinate_jobs WHERE task_name = 'heal.wake'")
                )
        for table in reversed(heal_tables()):
            await connection.execute(delete(table))


async def _copy_table(
    source: Database, target: Database, table: Table, progress: Progress | None
) -> TableCount:
    key = tuple_(*table.primary_key.columns)
    done = 0
    last: tuple[Any, ...] | None = None
    async with target.write() as writing:
        while True:
            query = select(table).order_by(*table.primary_key.columns).limit(BATCH)
            if last is not None:
                query = query.where(key > tuple_(*last))
            async with source.read() as reading:
                rows = [dict(row._mapping) for row in await reading.execute(query)]
            if not rows:
                break
            await writing.execute(insert(table), [_prepare(table, row) for row in rows])
            last = tuple(rows[-1][column.name] for column in table.primary_key.columns)
            done += len(rows)
            if progress:
                progress(table.name, done)
        if target.dialect == "postgresql":
            await _move_sequence(writing, table)
    return TableCount(table.name, done)


def _prepare(table: Table, row: Row) -> Row:
    if table is actions:
        row["claimed_until"] = None  # leases of the old process mean nothing
    return row


async def _move_sequence(connection: AsyncConnection, table: Table) -> None:
    """The next id the target hands out follows the copied ones."""
    for column in table.primary_key.columns:
        if not _is_integer(column):
            continue  # a text key (a lease's target) has no sequence to move
        # Names come from heal's own schema, never from input; a column without a
        # sequence is skipped by the WHERE.
        await connection.execute(
            text(
                "SELECT setval(seq, "  # noqa: S608
                f"COALESCE((SELECT max({column.name}) FROM {table.name}), 0) + 1, false) "
                f"FROM (SELECT pg_get_serial_sequence('{table.name}', '{column.name}') AS seq) s "
                "WHERE seq IS NOT NULL"
            )
        )


async def _verify(source: Database, target: Database, copied: list[TableCount]) -> None:
    in_source = await count_rows(source)
    in_target = await count_rows(target)
    if in_source == in_target == copied:
        return
    wrong = [
        f"{theirs.name} (source {theirs.rows}, target {ours.rows})"
        for theirs, ours in zip(in_source, in_target, strict=True)
        if theirs.rows != ours.rows
    ] or [f"{count.name} (copied {count.rows})" for count in copied]
    raise CountMismatch(
        "row counts differ after the copy (was heal still running?): " + ", ".join(wrong)
    )


async def in_flight_actions(database: Database) -> list[tuple[int, int]]:
    """(id, version) of every action that still has a wake due."""
    async with database.read() as connection:
        result = await connection.execute(
            select(actions.c.id, actions.c.version).where(actions.c.next_wake_at.is_not(None))
        )
        return [(row.id, row.version) for row in result]


def _is_integer(column: Column[Any]) -> bool:
    try:
        return column.type.python_type is int
    except NotImplementedError:
        return False
