"""playbooks, and what the learning sweep took from each incident

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02

``playbooks``: remediations that verifiably fixed a symptom signature, one per
(signature, action, params), with their stats (runs, verified successes, rejections, the
Wilson lower bound the tier ranks by, MTTR). ``learned``: per incident, the effectiveness
the sweep learned and the playbook it counted for, so a later rating adjusts instead of
counting twice.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import heal.store.types

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _when(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, heal.store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "playbooks",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("signature_key", sa.String(length=64), nullable=False),
        sa.Column("signature", _json(), nullable=False),
        sa.Column("alertname", sa.String(length=200), nullable=False),
        sa.Column("annotation_text", sa.Text(), nullable=False),
        sa.Column("action_name", sa.String(length=200), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("params_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("verified_successes", sa.Integer(), nullable=False),
        sa.Column("rejections", sa.Integer(), nullable=False),
        sa.Column("lower_bound", sa.Float(), nullable=False),
        sa.Column("mttr_seconds", sa.Float(), nullable=True),
        sa.Column("mttr_samples", sa.Integer(), nullable=False),
        sa.Column("learned_from", _id(), nullable=True),
        _when("last_used_at", True),
        _when("created_at", False),
        _when("updated_at", False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbooks")),
    )
    with op.batch_alter_table("playbooks") as batch:
        batch.create_index(
            "uq_playbooks_signature_key_action_name_params_key",
            ["signature_key", "action_name", "params_key"],
            unique=True,
        )
        batch.create_index(
            "ix_playbooks_status_alertname_lower_bound", ["status", "alertname", "lower_bound"]
        )
    op.create_table(
        "learned",
        sa.Column("incident_id", _id(), autoincrement=False, nullable=False),
        sa.Column("effectiveness", sa.Integer(), nullable=True),
        _when("seen_at", False),
        _when("learned_at", False),
        sa.Column("playbook_id", _id(), nullable=True),
        sa.Column("playbook_success", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_learned_incident_id_incidents")
        ),
        sa.ForeignKeyConstraint(
            ["playbook_id"], ["playbooks.id"], name=op.f("fk_learned_playbook_id_playbooks")
        ),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_learned")),
    )
    with op.batch_alter_table("learned") as batch:
        batch.create_index("ix_learned_playbook_id", ["playbook_id"])


def downgrade() -> None:
    op.drop_table("learned")
    op.drop_table("playbooks")
