"""Multi-row INSERTs that still say which id each row got."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_returning_ids(
    connection: AsyncConnection,
    table: Table,
    rows: list[dict[str, Any]],
    natural_key: Sequence[str],
) -> list[int]:
    """Insert ``rows``; their ids, in the order of ``rows``.

    Asking SQLAlchemy for ids in parameter order (``sort_by_parameter_order``) makes it
    send one INSERT per row on SQLite, which has no sentinel column to sort by: 50 rows
    cost 2.5x the CPU of one statement. Instead the rows go in as one statement and
    come back with a key that is unique within the batch, which maps ids to rows.
    """
    if not rows:
        return []
    keys = [tuple(row[name] for name in natural_key) for row in rows]
    if len(set(keys)) != len(keys):  # not unique here: take the one-per-row path
        result = await connection.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
        )
        return [row.id for row in result]
    columns = [table.c[name] for name in natural_key]
    result = await connection.execute(insert(table).returning(table.c.id, *columns), rows)
    ids = {tuple(row[1:]): row[0] for row in result}
    return [ids[key] for key in keys]
