"""notifications.sending_at: a channel's rate limit, kept in the rows

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

When a dispatcher took the channel's slot to send this row. The newest of a channel's
rows says when it may send again, whichever process sends: the rate limit holds across
workers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import heal.store.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column("sending_at", heal.store.types.UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_notifications_channel_sending_at", "notifications", ["channel", "sending_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_channel_sending_at", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("sending_at")
