"""safety governors: action targets, target leases, breakers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

``actions.target``: the rendered ``target_key`` of an action. ``target_leases``: one row per
slot of a target held by a started action (the primary key forbids two holders).
``breakers``: the circuit breakers that opened, per action and target.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import heal.store.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, heal.store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("target", sa.String(length=500), nullable=True))
        batch.create_index("ix_actions_action_name_target", ["action_name", "target"])
    op.create_table(
        "target_leases",
        sa.Column("target", sa.String(length=600), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("action_id", _id(), nullable=False),
        _when("acquired_at", False),
        sa.ForeignKeyConstraint(
            ["action_id"], ["actions.id"], name=op.f("fk_target_leases_action_id_actions")
        ),
        sa.PrimaryKeyConstraint("target", "slot", name=op.f("pk_target_leases")),
    )
    with op.batch_alter_table("target_leases") as batch:
        batch.create_index("ix_target_leases_action_id", ["action_id"], unique=False)
    op.create_table(
        "breakers",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("action_name", sa.String(length=200), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _when("opened_at", False),
        _when("closes_at", False),
        sa.Column("reset_by", sa.String(length=200), nullable=True),
        _when("reset_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakers")),
    )
    with op.batch_alter_table("breakers") as batch:
        batch.create_index("uq_breakers_action_name_target", ["action_name", "target"], unique=True)


def downgrade() -> None:
    op.drop_table("breakers")
    op.drop_table("target_leases")
    with op.batch_alter_table("actions") as batch:
        batch.drop_index("ix_actions_action_name_target")
        batch.drop_column("target")
