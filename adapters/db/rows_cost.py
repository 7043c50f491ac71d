"""SQLModel rows for cost control: budgets, alerts sent, the audit trail, digests posted, idle GPUs."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adapters.db.types import _ts


class BudgetRow(SQLModel, table=True):
    """A monthly budget set by an admin (overrides the configured one for the same scope/name)."""

    __tablename__ = "budget"

    scope: str = Field(primary_key=True, sa_type=sa.String)  # "project" or "user"
    name: str = Field(primary_key=True, sa_type=sa.String)
    monthly_limit: float
    updated_by: str = Field(sa_type=sa.String)
    updated_at: datetime = _ts()


class BudgetAlertRow(SQLModel, table=True):
    """A budget alert already sent: each threshold alerts once per month."""

    __tablename__ = "budget_alert"

    scope: str = Field(primary_key=True, sa_type=sa.String)
    name: str = Field(primary_key=True, sa_type=sa.String)
    month: str = Field(primary_key=True, sa_type=sa.String)  # "2026-11" in the configured time zone
    threshold: int = Field(primary_key=True, sa_type=sa.Integer, sa_column_kwargs={"autoincrement": False})
    sent_at: datetime = _ts()


class AuditRow(SQLModel, table=True):
    """Who decided what: approvals, denials, expiries, idle stops and keeps, budget changes."""

    __tablename__ = "audit"

    id: int | None = Field(
        default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    at: datetime = _ts(index=True)
    actor: str = Field(sa_type=sa.String)
    action: str = Field(index=True, sa_type=sa.String)
    experiment_id: str | None = Field(default=None, index=True, sa_type=sa.String)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class DigestRunRow(SQLModel, table=True):
    """A daily digest that was posted (or claimed): the primary key makes it once per day."""

    __tablename__ = "digest_run"

    day: str = Field(primary_key=True, sa_type=sa.String)  # local date "2026-11-22"
    claimed_at: datetime = _ts()
    claimed_by: str = Field(sa_type=sa.String)
    posted_at: datetime | None = _ts(default=None)
    channel: str | None = Field(default=None, sa_type=sa.String)
    ts: str | None = Field(default=None, sa_type=sa.String)


class IdleStateRow(SQLModel, table=True):
    """Idle-GPU bookkeeping of one running experiment."""

    __tablename__ = "idle_state"

    experiment_id: str = Field(primary_key=True, sa_type=sa.String)
    idle_since: datetime | None = _ts(default=None)
    warned_at: datetime | None = _ts(default=None)
    snoozed_until: datetime | None = _ts(default=None)
    idle_gpu_seconds: float = 0.0  # counted for the digest's "GPU-hours wasted"


class SpendDayRow(SQLModel, table=True):
    """A closed day's spend per project: it can no longer change, so the digest reads it, not attempts."""

    __tablename__ = "spend_day"

    timezone: str = Field(primary_key=True, sa_type=sa.String)
    day: str = Field(primary_key=True, sa_type=sa.String)  # local ISO date: text order is date order
    costs: dict[str, float] = Field(sa_type=sa.JSON)  # project -> cost
    computed_at: datetime = _ts()
