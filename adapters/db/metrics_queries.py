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

from adapters.db.cost_sql import ATTEMPT, EXPERIMENT, num, seconds_between, ts
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


@dataclass(frozen=True)
class Distribution:
    """A histogram's data: how many values fell at or below each bound, their count and their sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    total: float


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
    cls = sa.func.coalesce(ATTEMPT.c.failure_class, _NONE)
    rows = session.execute(
        sa.select(cls, sa.func.count()).where(ATTEMPT.c.ended_at.is_not(None)).group_by(cls)
    ).all()
    return {str(name): int(n) for name, n in rows}


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


def usage(session: Session, now: datetime) -> list[Usage]:
    """Spend and GPU-hours of all attempts ever run, per project, owner and GPU type (running ones up to now)."""
    # The digest's arithmetic (cost_queries.spend_by): rate x seconds between start and end (or now).
    seconds = seconds_between(ATTEMPT.c.started_at, sa.func.coalesce(ATTEMPT.c.ended_at, ts(now)))
    gpu_type = sa.func.coalesce(EXPERIMENT.c.spec["gpu_type"].as_string(), _NONE)
    stmt = (
        sa.select(
            EXPERIMENT.c.project, EXPERIMENT.c.owner, gpu_type.label("gpu_type"),
            sa.func.sum(ATTEMPT.c.hourly_rate * seconds).label("cost"),
            sa.func.sum(ATTEMPT.c.gpus * seconds).label("gpu_seconds"),
        )
        .select_from(ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id))
        .where(ATTEMPT.c.started_at.is_not(None))
        .group_by(EXPERIMENT.c.project, EXPERIMENT.c.owner, gpu_type)
    )
    return [
        Usage(row.project, row.owner, str(row.gpu_type), max(float(row.cost or 0), 0.0) / 3600.0,
              max(float(row.gpu_seconds or 0), 0.0) / 3600.0)
        for row in session.execute(stmt)
    ]


def _distribution(session: Session, seconds: sa.ColumnElement[float], frm: sa.FromClause,
                  where: list[sa.ColumnElement[bool]], bounds: tuple[float, ...]) -> Distribution:
    """One aggregate row: the count at or below each bound, the count and the sum of `seconds`."""
    value = greatest_zero(seconds)
    columns = [sa.func.count(), sa.func.coalesce(sa.func.sum(value), 0.0)]
    columns += [sa.func.coalesce(sa.func.sum(sa.case((value <= num(b), 1), else_=0)), 0) for b in bounds]
    row = session.execute(sa.select(*columns).select_from(frm).where(*where)).one()
    return Distribution(bounds, tuple(int(n) for n in row[2:]), int(row[0]), float(row[1]))


def greatest_zero(seconds: sa.ColumnElement[float]) -> sa.ColumnElement[float]:
    """Negative intervals (clock skew between replicas) count as 0 s, as a histogram cannot hold them."""
    return sa.case((seconds < num(0), num(0)), else_=seconds)


def supervision_latency(session: Session, bounds: tuple[float, ...]) -> Distribution:
    """Seconds from a failed attempt's end to its successor's submission (backoff included)."""
    prev = ATTEMPT.alias("prev")
    frm = ATTEMPT.join(prev, sa.and_(prev.c.experiment_id == ATTEMPT.c.experiment_id,
                                     prev.c.number == ATTEMPT.c.number - 1))
    return _distribution(session, seconds_between(prev.c.ended_at, ATTEMPT.c.created_at), frm,
                         [ATTEMPT.c.number > 1, prev.c.ended_at.is_not(None)], bounds)


def launch_to_running(session: Session, bounds: tuple[float, ...]) -> Distribution:
    """Seconds from an experiment's launch to its first attempt running (approval and queueing included)."""
    frm = ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id)
    return _distribution(session, seconds_between(EXPERIMENT.c.created_at, ATTEMPT.c.started_at), frm,
                         [ATTEMPT.c.number == 1, ATTEMPT.c.started_at.is_not(None)], bounds)
