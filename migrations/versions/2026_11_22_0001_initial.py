"""initial: experiments, their attempts, and the event outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22 07:55:37.061905+00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    """Create the experiment, attempt and outbox_event tables."""
    op.create_table(
        "experiment",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("group_name", sa.String(), nullable=True),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("state_reason", sa.String(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_restarts", sa.Integer(), nullable=False),
        sa.Column("infra_restarts", sa.Integer(), nullable=False),
        sa.Column("free_restarts", sa.Integer(), nullable=False),
        sa.Column("stopped_by", sa.String(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_experiment_idempotency_key")),
    )
    for column in ("created_at", "group_name", "name", "owner", "project", "state"):
        op.create_index(op.f(f"ix_experiment_{column}"), "experiment", [column])

    op.create_table(
        "attempt",
        sa.Column("experiment_id", sa.String(), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("failure_class", sa.String(), nullable=True),
        sa.Column("resumed_from", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiment.id"],
            name=op.f("fk_attempt_experiment_id_experiment"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "number", name=op.f("pk_attempt")),
    )

    op.create_table(
        "outbox_event",
        # INTEGER PRIMARY KEY on SQLite (its only autoincrementing type), BIGSERIAL elsewhere.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("experiment_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox_event")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_event_id")),
    )
    op.create_index(op.f("ix_outbox_event_experiment_id"), "outbox_event", ["experiment_id"])
    op.create_index(
        "ix_outbox_event_pending", "outbox_event", ["seq"],
        sqlite_where=PENDING, postgresql_where=PENDING,
    )


def downgrade() -> None:
    """Drop everything upgrade() created."""
    op.drop_table("outbox_event")
    op.drop_table("attempt")
    op.drop_table("experiment")
