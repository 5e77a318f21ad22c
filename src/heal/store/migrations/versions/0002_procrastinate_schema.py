"""procrastinate's job tables, on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The distributed runtime keeps its wakes in procrastinate's tables, in the same database
as heal's state, so that a state change and the deferral of its next wake commit
together. The schema is procrastinate's own (pinned in pyproject.toml); SQLite has no
such tables and needs none.
"""

from __future__ import annotations

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    exists = bind.exec_driver_sql("SELECT to_regclass('procrastinate_jobs')").scalar()
    if exists is None:
        # The driver takes '%' for a placeholder; the schema's own '%' are literal.
        bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))


def downgrade() -> None:
    # procrastinate's schema is left in place: it may hold other applications' jobs.
    pass
