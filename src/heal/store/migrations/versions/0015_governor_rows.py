"""actions.delayed_at and breakers.tripped_by: governor state kept in the rows

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

concurrency.max_wait bounds how long an action waits for a busy target; the wait is
counted from actions.delayed_at, so it holds across restarts and workers. A breaker
remembers the actions that opened it (breakers.tripped_by), so its reset is written on
their incidents' timelines.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import heal.store.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "actions",
        sa.Column("delayed_at", heal.store.types.UTCDateTime(), nullable=True),
    )
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.add_column("breakers", sa.Column("tripped_by", json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("breakers") as batch:
        batch.drop_column("tripped_by")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("delayed_at")
