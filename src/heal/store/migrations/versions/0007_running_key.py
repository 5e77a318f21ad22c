"""actions.running_key: steps that must not run twice

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Set before a step that is not idempotent (a command) runs, cleared by the commit of its
outcome: a wake that finds it set knows heal stopped mid-run and does not run it again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("actions", sa.Column("running_key", sa.String(length=400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("running_key")
