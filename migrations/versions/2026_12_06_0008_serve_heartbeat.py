"""serve heartbeat: each running `expbot serve` stamps a row, so the CLI can tell when nothing will run a launch

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:10:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create serve_heartbeat, one row per serve process, indexed by the time of its last beat."""
    op.create_table(
        "serve_heartbeat",
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("backend", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("beat_at", TS, nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_serve_heartbeat")),
    )
    op.create_index(op.f("ix_serve_heartbeat_beat_at"), "serve_heartbeat", ["beat_at"])


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index(op.f("ix_serve_heartbeat_beat_at"), table_name="serve_heartbeat")
    op.drop_table("serve_heartbeat")
