"""user tokens: scopes and expiry

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``api_tokens.scopes`` narrows what a user's token may do (NULL: all that the user's role
allows); ``expires_at`` is when it stops working (NULL: until revoked).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import heal.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_tokens",
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )
    op.add_column(
        "api_tokens", sa.Column("expires_at", heal.store.types.UTCDateTime(), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("scopes")
