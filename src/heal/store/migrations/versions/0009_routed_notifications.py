"""notifications.channel, .event, .payload: routed events, one row per channel

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

A row of kind "event" goes to the one channel it names (a route of the policy's
notifications:), and is that channel's delivery record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("channel", sa.String(length=100), nullable=True))
    op.add_column("notifications", sa.Column("event", sa.String(length=40), nullable=True))
    op.add_column(
        "notifications",
        sa.Column("payload", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True),
    )
    op.create_index("ix_notifications_incident_id", "notifications", ["incident_id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_incident_id", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("payload")
        batch.drop_column("event")
        batch.drop_column("channel")
