"""digest: covering index on attempt ends, outcome and restart indexes, kept daily spend

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 11:00:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Indexes for cost windows and digest counts; the spend_day table of closed days."""
    with op.batch_alter_table("attempt") as batch:
        batch.create_index("ix_attempt_ended_at", ["ended_at", "started_at", "experiment_id", "hourly_rate", "gpus"])
        batch.create_index("ix_attempt_created_at", ["created_at"])
    op.create_index("ix_experiment_state_updated_at", "experiment", ["state", "updated_at"])
    op.create_table(
        "spend_day",
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("costs", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("timezone", "day", name=op.f("pk_spend_day")),
    )


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_table("spend_day")
    op.drop_index("ix_experiment_state_updated_at", table_name="experiment")
    with op.batch_alter_table("attempt") as batch:
        batch.drop_index("ix_attempt_created_at")
        batch.drop_index("ix_attempt_ended_at")
