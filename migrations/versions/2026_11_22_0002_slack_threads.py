"""slack threads: launch id and channel on experiments, one parent message per launch

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:00:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add experiment.launch_id (existing rows: their own id) and channel; create slack_thread."""
    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("launch_id", sa.String(), nullable=True))
        batch.add_column(sa.Column("channel", sa.String(), nullable=True))
    op.execute("UPDATE experiment SET launch_id = id WHERE launch_id IS NULL")
    with op.batch_alter_table("experiment") as batch:
        batch.alter_column("launch_id", existing_type=sa.String(), nullable=False)
        batch.create_index("ix_experiment_launch_id", ["launch_id"])
    op.create_table(
        "slack_thread",
        sa.Column("launch_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("ts", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("launch_id", name=op.f("pk_slack_thread")),
    )


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_table("slack_thread")
    with op.batch_alter_table("experiment") as batch:
        batch.drop_index("ix_experiment_launch_id")
        batch.drop_column("channel")
        batch.drop_column("launch_id")
