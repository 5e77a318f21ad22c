"""actions.delayed_at: when a delayed action first found its target busy

Revision ID: 0016
Revises: 0011
Create Date: 2026-12-02

concurrency.max_wait bounds how long an action waits for a busy target; the wait is
counted from this column, so it holds across restarts and workers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import heal.store.types

revision = "0016"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "actions",
        sa.Column("delayed_at", heal.store.types.UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("delayed_at")
