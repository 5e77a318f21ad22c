"""chat delivery: which channels a notification reached; a card's thread and closing

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

A notification goes to every configured channel (Telegram, Slack). ``sent_to`` records
the channels it reached, so a retry after one channel failed does not post twice on the
other. ``chat_cards.thread_id`` is the message a card was posted under (Slack threads
must name their root); ``closed_at`` is when its buttons were removed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import heal.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("sent_to", sa.String(length=100), nullable=True))
    op.add_column("chat_cards", sa.Column("thread_id", sa.String(length=200), nullable=True))
    op.add_column(
        "chat_cards", sa.Column("closed_at", heal.store.types.UTCDateTime(), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("chat_cards") as batch:
        batch.drop_column("closed_at")
        batch.drop_column("thread_id")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("sent_to")
