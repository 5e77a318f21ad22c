"""knowledge_entries: past remediations and runbook sections, with full-text search

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

The search index is each database's own. SQLite: the FTS5 table ``knowledge_fts`` over
title and body, external content (the rows stay in knowledge_entries), kept in step by
three triggers; a later migration that rebuilds knowledge_entries through batch mode must
create the triggers again and then run ``INSERT INTO knowledge_fts(knowledge_fts)
VALUES('rebuild')``. PostgreSQL: a generated ``tsvector`` column (english, title weighted
A, body B) with a GIN index.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import heal.store.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE knowledge_fts USING fts5(title, body, content='knowledge_entries', "
    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER knowledge_entries_fts_insert AFTER INSERT ON knowledge_entries BEGIN "
    "INSERT INTO knowledge_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "CREATE TRIGGER knowledge_entries_fts_delete AFTER DELETE ON knowledge_entries BEGIN "
    "INSERT INTO knowledge_fts(knowledge_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); END",
    "CREATE TRIGGER knowledge_entries_fts_update AFTER UPDATE OF title, body "
    "ON knowledge_entries BEGIN "
    "INSERT INTO knowledge_fts(knowledge_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); "
    "INSERT INTO knowledge_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
)
_POSTGRES_SEARCH = (
    "ALTER TABLE knowledge_entries ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', title), 'A') || "
    "setweight(to_tsvector('english', body), 'B')) STORED",
    "CREATE INDEX ix_knowledge_entries_search ON knowledge_entries USING GIN (search)",
)


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, heal.store.types.UTCDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "knowledge_entries",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ref", sa.String(length=1000), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("symptoms", _json(), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=True),
        sa.Column("params", _json(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("effectiveness", sa.Integer(), nullable=True),
        sa.Column("seconds_to_resolve", sa.Integer(), nullable=True),
        sa.Column("content_hash", sa.String(length=100), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_entries")),
    )
    with op.batch_alter_table("knowledge_entries") as batch:
        batch.create_index("uq_knowledge_entries_ref", ["ref"], unique=True)
        batch.create_index("ix_knowledge_entries_kind_source", ["kind", "source"])
    search = _SQLITE_SEARCH if op.get_bind().dialect.name == "sqlite" else _POSTGRES_SEARCH
    for statement in search:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE knowledge_fts")  # its triggers go with knowledge_entries
    op.drop_table("knowledge_entries")
