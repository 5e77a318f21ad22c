"""verification of fixes: verifications and ratings

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

``verifications``: one row per action that ended success under ``verify:`` (its watch of
the incident, deadlines and outcome). ``ratings``: people's 1-5 ratings of an incident's
remediation, one per person.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import heal.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, heal.store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "verifications",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("action_id", _id(), nullable=False),
        sa.Column("incident_id", _id(), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("action_name", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("on_ineffective", sa.String(length=20), nullable=False),
        sa.Column("quiet_for", sa.Integer(), nullable=False),
        _when("started_at", False),
        _when("within_at", False),
        _when("resolved_at", True),
        _when("quiet_until", True),
        _when("outcome_at", True),
        sa.Column(
            "evidence",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["action_id"], ["actions.id"], name=op.f("fk_verifications_action_id_actions")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_verifications_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
        sa.UniqueConstraint("action_id", name=op.f("uq_verifications_action_id")),
    )
    with op.batch_alter_table("verifications") as batch:
        batch.create_index("ix_verifications_outcome", ["outcome"], unique=False)
        batch.create_index("ix_verifications_incident_id", ["incident_id"], unique=False)
    op.create_table(
        "ratings",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("incident_id", _id(), nullable=False),
        sa.Column("rated_by", sa.String(length=200), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        _when("at", False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_ratings_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
    )
    with op.batch_alter_table("ratings") as batch:
        batch.create_index("uq_ratings_incident_rated_by", ["incident_id", "rated_by"], unique=True)


def downgrade() -> None:
    op.drop_table("ratings")
    op.drop_table("verifications")
