"""metrics: covering indexes for /metrics' counts of experiments by state and project, and of ended attempts by failure class

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 05:15:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Every scrape counts these: read from the indexes alone, not from the (wide) rows."""
    op.create_index("ix_experiment_state_project", "experiment", ["state", "project"])
    op.create_index("ix_attempt_failure_class_ended_at", "attempt", ["failure_class", "ended_at"])


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index("ix_attempt_failure_class_ended_at", table_name="attempt")
    op.drop_index("ix_experiment_state_project", table_name="experiment")
