"""cost control: attempt pricing, budgets, budget alerts, audit, digest runs, idle state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Price attempts (existing ones cost 0: they ran before prices were recorded) and add the tables."""
    with op.batch_alter_table("attempt") as batch:
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("hourly_rate", sa.Float(), nullable=False, server_default="0"))
        batch.create_index("ix_attempt_started_at", ["started_at"])
    op.create_table(
        "budget",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("monthly_limit", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", name=op.f("pk_budget")),
    )
    op.create_table(
        "budget_alert",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("month", sa.String(), nullable=False),
        sa.Column("threshold", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", "month", "threshold", name=op.f("pk_budget_alert")),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("experiment_id", sa.String(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_at"), "audit", ["at"])
    op.create_index(op.f("ix_audit_action"), "audit", ["action"])
    op.create_index(op.f("ix_audit_experiment_id"), "audit", ["experiment_id"])
    op.create_table(
        "digest_run",
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("claimed_at", TS, nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=False),
        sa.Column("posted_at", TS, nullable=True),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("ts", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_digest_run")),
    )
    op.create_table(
        "idle_state",
        sa.Column("experiment_id", sa.String(), nullable=False),
        sa.Column("idle_since", TS, nullable=True),
        sa.Column("warned_at", TS, nullable=True),
        sa.Column("snoozed_until", TS, nullable=True),
        sa.Column("idle_gpu_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", name=op.f("pk_idle_state")),
    )


def downgrade() -> None:
    """Drop what upgrade added."""
    for table in ("idle_state", "digest_run", "audit", "budget_alert", "budget"):
        op.drop_table(table)
    with op.batch_alter_table("attempt") as batch:
        batch.drop_index("ix_attempt_started_at")
        batch.drop_column("hourly_rate")
        batch.drop_column("gpus")
