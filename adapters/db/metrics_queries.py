"""Aggregates that serve's /metrics reads from the store at scrape time (SQLite and PostgreSQL alike).

Read from the store rather than counted in memory, so that every replica reports the same figures,
a restart loses none of them, and the spend counters agree with the digest's (the same attempts,
the same prices, the same interval arithmetic as adapters.db.cost_queries). Every label these
return is bounded: states, projects, owners, GPU types and failure classes, never an id or free text.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db.cost_sql import ATTEMPT, EXPERIMENT, clipped_interval, overlapping
from adapters.db.rows import OutboxEventRow

OUTBOX = OutboxEventRow.__table__
_NONE = "none"  # the label value for "no GPU type" and "no failure class"


@dataclass(frozen=True)
class Usage:
    """Spend and GPU-hours of every attempt so far (running ones up to now) for one label set."""

    project: str
    owner: str
    gpu_type: str
    cost: float
    gpu_hours: float


def experiments_by_state(session: Session) -> list[tuple[str, str, int]]:
    """(state, project, how many experiments) for every pair that has any."""
    rows = session.execute(
        sa.select(EXPERIMENT.c.state, EXPERIMENT.c.project, sa.func.count()).group_by(EXPERIMENT.c.state, EXPERIMENT.c.project)
    ).all()
    return [(state, project, int(n)) for state, project, n in rows]


def attempts_started(session: Session) -> int:
    """Attempts ever submitted to the backend."""
    return int(session.execute(sa.select(sa.func.count()).select_from(ATTEMPT)).scalar_one())


def attempts_ended(session: Session) -> dict[str, int]:
    """Attempts that ended, by failure class ('none' for those that succeeded or were stopped)."""
    # Grouped by the bare column, so that the (failure_class, ended_at) index alone answers.
    rows = session.execute(
        sa.select(ATTEMPT.c.failure_class, sa.func.count())
        .where(ATTEMPT.c.ended_at.is_not(None)).group_by(ATTEMPT.c.failure_class)
    ).all()
    counts: dict[str, int] = {}
    for name, n in rows:
        counts[name or _NONE] = counts.get(name or _NONE, 0) + int(n)
    return counts


def restarts_by_budget(session: Session) -> dict[str, int]:
    """Restarts so far, by the budget each counted against: user errors, infrastructure, or none."""
    row = session.execute(sa.select(
        sa.func.coalesce(sa.func.sum(EXPERIMENT.c.user_restarts), 0),
        sa.func.coalesce(sa.func.sum(EXPERIMENT.c.infra_restarts), 0),
        sa.func.coalesce(sa.func.sum(EXPERIMENT.c.free_restarts), 0),
    )).one()
    return {"user": int(row[0]), "infra": int(row[1]), "none": int(row[2])}


def outbox_backlog(session: Session) -> tuple[int, datetime | None]:
    """Events stored but not yet delivered, and when the oldest of them occurred."""
    pending = OUTBOX.c.delivered_at.is_(None)
    count = session.execute(sa.select(sa.func.count()).select_from(OUTBOX).where(pending)).scalar_one()
    oldest = session.execute(
        sa.select(OUTBOX.c.occurred_at).where(pending).order_by(OUTBOX.c.seq).limit(1)
    ).scalar_one_or_none()
    return int(count), oldest


def usage(session: Session, start: datetime, end: datetime, now: datetime) -> list[Usage]:
    """Spend and GPU-hours inside [start, end) per project, owner and GPU type (running attempts up to now).

    The digest's arithmetic (cost_queries.spend_by): each attempt's running interval clipped to the window.
    """
    began, stopped = clipped_interval(start, end, now)
    seconds = stopped - began
    gpu_type = sa.func.coalesce(EXPERIMENT.c.spec["gpu_type"].as_string(), _NONE)
    stmt = (
        sa.select(
            EXPERIMENT.c.project, EXPERIMENT.c.owner, gpu_type.label("gpu_type"),
            sa.func.sum(ATTEMPT.c.hourly_rate * seconds).label("cost"),
            sa.func.sum(ATTEMPT.c.gpus * seconds).label("gpu_seconds"),
        )
        .select_from(ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id))
        .where(overlapping(start, end))
        .group_by(EXPERIMENT.c.project, EXPERIMENT.c.owner, gpu_type)
    )
    return [
        Usage(row.project, row.owner, str(row.gpu_type), max(float(row.cost or 0), 0.0) / 3600.0,
              max(float(row.gpu_seconds or 0), 0.0) / 3600.0)
        for row in session.execute(stmt)
    ]
