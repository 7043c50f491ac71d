"""SQLModel table rows: the database schema.

Imports nothing from core, so that migrations (which may import only these rows) stay
independent of the domain; repository.py maps rows to and from domain objects.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adapters.db.types import UtcDateTime, _ts  # noqa: E402,F401  (re-exported)


# core.model.ACTIVE, spelled out because rows import nothing from core (a test keeps them equal).
ACTIVE_STATES = ("PENDING_APPROVAL", "QUEUED", "STARTING", "RUNNING", "RESTARTING", "STOPPING")
ACTIVE_NAME_INDEX = "ux_experiment_active_name"
_IS_ACTIVE = sa.text("state IN ({})".format(", ".join(f"'{s}'" for s in ACTIVE_STATES)))


class ExperimentRow(SQLModel, table=True):
    """One experiment; `version` guards against lost updates (optimistic concurrency)."""

    __tablename__ = "experiment"
    __table_args__ = (
        sa.UniqueConstraint("idempotency_key"),
        sa.Index("ix_experiment_state_updated_at", "state", "updated_at"),  # the digest's outcome counts
        sa.Index("ix_experiment_state_project", "state", "project"),  # /metrics counts from the index alone
        # One active experiment per name, whoever launches it at the same moment; ended names are free.
        sa.Index(ACTIVE_NAME_INDEX, "name", unique=True,
                 sqlite_where=_IS_ACTIVE, postgresql_where=_IS_ACTIVE),
    )

    id: str = Field(primary_key=True, sa_type=sa.String)
    name: str = Field(index=True, sa_type=sa.String)
    group_name: str | None = Field(default=None, index=True, sa_type=sa.String)
    owner: str = Field(index=True, sa_type=sa.String)
    project: str = Field(index=True, sa_type=sa.String)
    state: str = Field(index=True, sa_type=sa.String)
    state_reason: str = Field(default="", sa_type=sa.String)
    spec: dict[str, Any] = Field(sa_type=sa.JSON)  # ExperimentSpec.model_dump(mode="json")
    idempotency_key: str | None = Field(default=None, sa_type=sa.String)
    created_at: datetime = _ts(index=True)  # lists are ordered by it
    updated_at: datetime | None = _ts(default=None)
    next_attempt_at: datetime | None = _ts(default=None)
    user_restarts: int = 0
    infra_restarts: int = 0
    free_restarts: int = 0
    stopped_by: str | None = Field(default=None, sa_type=sa.String)
    stop_requested_at: datetime | None = _ts(default=None)
    launch_id: str = Field(index=True, sa_type=sa.String)
    channel: str | None = Field(default=None, sa_type=sa.String)
    version: int = 0


class AttemptRow(SQLModel, table=True):
    """One attempt of an experiment, keyed by (experiment, number)."""

    __tablename__ = "attempt"
    __table_args__ = (
        # Cost windows find attempts by their end (running ones have none) and read the rest of the
        # interval and its price from the index alone.
        sa.Index("ix_attempt_ended_at", "ended_at", "started_at", "experiment_id", "hourly_rate", "gpus"),
        sa.Index("ix_attempt_created_at", "created_at"),  # restarts per day
        sa.Index("ix_attempt_failure_class_ended_at", "failure_class", "ended_at"),  # /metrics: ended by class
    )

    experiment_id: str = Field(
        primary_key=True, sa_type=sa.String, foreign_key="experiment.id", ondelete="CASCADE"
    )
    number: int = Field(primary_key=True, sa_type=sa.Integer, sa_column_kwargs={"autoincrement": False})
    state: str = Field(sa_type=sa.String)
    created_at: datetime = _ts()
    started_at: datetime | None = _ts(default=None, index=True)  # cost windows scan by start
    ended_at: datetime | None = _ts(default=None)
    exit_code: int | None = None
    reason: str = Field(default="", sa_type=sa.String)
    failure_class: str | None = Field(default=None, sa_type=sa.String)
    resumed_from: str | None = Field(default=None, sa_type=sa.String)
    gpus: int = 0
    hourly_rate: float = 0.0  # what one wall hour of this attempt costs, priced when it started
    node: str | None = Field(default=None, sa_type=sa.String)  # where it ran (node, or local GPUs)


class OutboxEventRow(SQLModel, table=True):
    """An event stored with the state change that caused it, until delivered.

    `seq` gives the insertion order: events of one commit often share `occurred_at`, and
    delivery must keep their order (launched before attempt started).
    """

    __tablename__ = "outbox_event"
    __table_args__ = (
        # The relay's query (undelivered, oldest first) reads only this small partial index.
        sa.Index(
            "ix_outbox_event_pending",
            "seq",
            sqlite_where=sa.text("delivered_at IS NULL"),
            postgresql_where=sa.text("delivered_at IS NULL"),
        ),
    )

    seq: int | None = Field(
        default=None,
        primary_key=True,
        # INTEGER on SQLite: only an INTEGER PRIMARY KEY autoincrements there.
        sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
    )
    event_id: str = Field(unique=True, sa_type=sa.String)
    experiment_id: str = Field(index=True, sa_type=sa.String)
    kind: str = Field(sa_type=sa.String)
    payload: dict[str, Any] = Field(sa_type=sa.JSON)
    occurred_at: datetime = _ts()
    delivered_at: datetime | None = _ts(default=None)


class SlackThreadRow(SQLModel, table=True):
    """The Slack parent message of one launch (an experiment or a sweep group)."""

    __tablename__ = "slack_thread"

    launch_id: str = Field(primary_key=True, sa_type=sa.String)
    channel: str = Field(sa_type=sa.String)
    ts: str = Field(sa_type=sa.String)
    created_at: datetime = _ts()


# The cost-control and progress tables live in their own modules; importing them here keeps SQLModel.metadata
# complete for whoever imports the rows (migrations, schema comparison).
from adapters.db.rows_cost import (  # noqa: E402,F401
    AuditRow,
    BudgetAlertRow,
    BudgetRow,
    DigestRunRow,
    IdleStateRow,
    SpendDayRow,
)
from adapters.db.rows_progress import AttemptProgressRow  # noqa: E402,F401
from adapters.db.rows_serve import ServeHeartbeatRow  # noqa: E402,F401
