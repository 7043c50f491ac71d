"""attempt progress: heartbeats and checkpoints reported over HTTP by training containers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 12:00:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create attempt_progress, indexed by heartbeat time for the supervisor's stall check."""
    op.create_table(
        "attempt_progress",
        sa.Column("experiment_id", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("checkpoint", sa.String(), nullable=True),
        sa.Column("checkpoint_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("experiment_id", "attempt", name=op.f("pk_attempt_progress")),
    )
    op.create_index(op.f("ix_attempt_progress_heartbeat_at"), "attempt_progress", ["heartbeat_at"])


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index(op.f("ix_attempt_progress_heartbeat_at"), table_name="attempt_progress")
    op.drop_table("attempt_progress")
