"""An index on procrastinate_jobs.lock for waiting and running jobs, on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

procrastinate's fetch function skips a job while another job with the same lock is
running or queued ahead of it. heal gives every wake a lock (its action), so with
thousands of actions in flight that check scanned the whole queue for every candidate:
31 ms per fetch at 10,000 queued wakes, 1 ms with this index (measured; see
docs/performance.md). Fetches run one at a time per worker, so this bounded throughput.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX = "heal_procrastinate_jobs_lock_waiting"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON procrastinate_jobs (lock) "
        "WHERE status IN ('todo', 'doing')"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
