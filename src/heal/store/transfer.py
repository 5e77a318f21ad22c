"""Move an installation's data to another database (``heal db migrate-to URL``).

The target is migrated to the current schema and must be empty. Tables are copied in
dependency order, in batches, each table in one transaction; identity sequences are
then moved past the copied ids. In-flight actions keep their deadlines: the caller
gives each one a wake on the target's runtime afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Table, func, insert, select, text

from heal.store import migrate
from heal.store.db import Database
from heal.store.tables import actions, alerts, incidents, timeline

TABLES: tuple[Table, ...] = (incidents, alerts, actions, timeline)
BATCH = 1000


class TargetNotEmpty(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TableCount:
    name: str
    rows: int


Progress = Callable[[str, int], None]  # (table, rows copied so far in it)


async def count_rows(database: Database) -> list[TableCount]:
    async with database.read() as connection:
        return [
            TableCount(
                table.name,
                (await connection.execute(select(func.count()).select_from(table))).scalar_one(),
            )
            for table in TABLES
        ]


async def copy_database(
    source: Database, target: Database, progress: Progress | None = None
) -> list[TableCount]:
    await migrate.upgrade(target)
    if any(count.rows for count in await count_rows(target)):
        raise TargetNotEmpty("the target database already holds heal data; use an empty one")
    copied: list[TableCount] = []
    for table in TABLES:
        done = 0
        last_id = 0
        async with target.write() as writing:
            while True:
                async with source.read() as reading:
                    rows = [
                        dict(r._mapping)
                        for r in await reading.execute(
                            select(table)
                            .where(table.c.id > last_id)
                            .order_by(table.c.id)
                            .limit(BATCH)
                        )
                    ]
                if not rows:
                    break
                if table is actions:
                    for row in rows:
                        row["claimed_until"] = None  # leases of the old process mean nothing
                await writing.execute(insert(table), rows)
                last_id = rows[-1]["id"]
                done += len(rows)
                if progress:
                    progress(table.name, done)
            if target.dialect == "postgresql":
                await writing.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608
                        f"GREATEST((SELECT max(id) FROM {table.name}), 1))"
                    )
                )
        copied.append(TableCount(table.name, done))
    return copied


async def in_flight_actions(database: Database) -> list[tuple[int, int]]:
    """(id, version) of every action that still has a wake due."""
    async with database.read() as connection:
        result = await connection.execute(
            select(actions.c.id, actions.c.version).where(actions.c.next_wake_at.is_not(None))
        )
        return [(row.id, row.version) for row in result]
