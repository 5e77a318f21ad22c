"""notifications.dedupe_key: a message queued once, however often its cause is redelivered

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

A message whose cause can happen again (a ``notify`` step run again after a crash with the
same idempotency key, an incident's one rating prompt) carries a key; the unique index
makes "queued once" the database's rule on every worker. NULL for every other row (both
databases allow many NULLs under a unique index).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("dedupe_key", sa.String(200), nullable=True))
    op.create_index("uq_notifications_dedupe_key", "notifications", ["dedupe_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_notifications_dedupe_key", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("dedupe_key")
