"""attempt node: where each attempt ran, so restarts can avoid nodes that failed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 13:00:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add attempt.node (a Kubernetes node name, or the local GPUs an attempt held)."""
    with op.batch_alter_table("attempt") as batch:
        batch.add_column(sa.Column("node", sa.String(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table("attempt") as batch:
        batch.drop_column("node")
