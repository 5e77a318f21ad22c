"""decisions: which action of a rule's catalogue heal chose for an incident

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

One row per incident and deciding rule (``rules[].decide``): its state, deadline and lease,
the tiers tried and the winning proposal, and the action it created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import heal.store.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, heal.store.types.UTCDateTime(timezone=True), nullable=nullable)


def _json(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("incident_id", _id(), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("alert_id", _id(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _when("created_at", False),
        _when("updated_at", False),
        _when("deadline_at", False),
        _when("claimed_until", True),
        sa.Column("runs", sa.Integer(), nullable=False),
        _json("attempts", False),
        sa.Column("tier", sa.String(length=20), nullable=True),
        _json("proposal", True),
        sa.Column("action_id", _id(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_decisions_incident_id_incidents")
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_decisions_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["action_id"], ["actions.id"], name=op.f("fk_decisions_action_id_actions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    with op.batch_alter_table("decisions") as batch:
        batch.create_index("uq_decisions_incident_id_rule", ["incident_id", "rule"], unique=True)
        batch.create_index("ix_decisions_state", ["state"], unique=False)
        batch.create_index("ix_decisions_action_id", ["action_id"], unique=False)


def downgrade() -> None:
    op.drop_table("decisions")
