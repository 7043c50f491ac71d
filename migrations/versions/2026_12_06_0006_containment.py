"""containment: stops carried out by the supervisor, and one active experiment per name

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:00:00+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The active states as of this revision (a revision never follows later code).
ACTIVE = ("PENDING_APPROVAL", "QUEUED", "STARTING", "RUNNING", "RESTARTING", "STOPPING")
IS_ACTIVE = sa.text("state IN ({})".format(", ".join(f"'{s}'" for s in ACTIVE)))
INDEX = "ux_experiment_active_name"


def upgrade() -> None:
    """Add experiment.stop_requested_at and a unique index on the names of active experiments."""
    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True))
    _end_duplicates()
    op.create_index(INDEX, "experiment", ["name"], unique=True,
                    sqlite_where=IS_ACTIVE, postgresql_where=IS_ACTIVE)


def _end_duplicates() -> None:
    # Before names were unique, two launches racing could both create an active experiment with
    # one name. The newest is the one its name reached; the older ones are stopped, said so in
    # their reason (any process they still run is left alone: it is not this migration's to kill).
    experiment = sa.table("experiment", sa.column("id"), sa.column("name"), sa.column("state"),
                          sa.column("state_reason"), sa.column("created_at"), sa.column("stopped_by"))
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(experiment.c.id, experiment.c.name)
        .where(experiment.c.state.in_(ACTIVE))
        .order_by(experiment.c.name, experiment.c.created_at.desc(), experiment.c.id.desc())
    ).all()
    seen: set[str] = set()
    older = []
    for exp_id, name in rows:
        if name in seen:
            older.append(exp_id)
        seen.add(name)
    if older:
        conn.execute(
            experiment.update().where(experiment.c.id.in_(older)).values(
                state="STOPPED", stopped_by="expbot",
                state_reason="stopped by the upgrade: a newer active experiment has the same name",
            )
        )


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index(INDEX, table_name="experiment")
    with op.batch_alter_table("experiment") as batch:
        batch.drop_column("stop_requested_at")
