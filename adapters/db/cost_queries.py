"""Cost read queries: spend over time windows, aggregated in SQL (SQLite and PostgreSQL alike).

An attempt costs `hourly_rate` per wall hour between `started_at` and `ended_at` (a running
attempt: up to `now`); the part of that interval inside a window [start, end) is what the window
is charged. Every query narrows attempts with `started_at < end AND (ended_at IS NULL OR
ended_at > start)`; for the recent windows that reports ask about, the index on ended_at is
the one that bounds the scan (see _overlapping).
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from adapters.db.rows import AttemptRow, ExperimentRow
from adapters.db.types import UtcDateTime
from core.ports import SpendRow

ATTEMPT = AttemptRow.__table__
EXPERIMENT = ExperimentRow.__table__
_GROUP_KEYS = {"project": EXPERIMENT.c.project, "owner": EXPERIMENT.c.owner}
_TERMINAL = {"SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"}


# --- portable SQL pieces -----------------------------------------------------------------------
class seconds_between(FunctionElement[float]):  # noqa: N801  (reads like the SQL function it is)
    """Seconds from the first timestamp to the second, as a float (negative if the second is earlier)."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    # SQLite keeps UTC wall time as text (see UtcDateTime); julianday() reads it as UTC days.
    first, second = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({second}) - julianday({first})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    first, second = (compiler.process(c, **kw) for c in element.clauses)
    # date_part() computes in double precision; EXTRACT() returns numeric, several times slower.
    return f"date_part('epoch', {second} - {first})"


@compiles(seconds_between)
def _seconds_between_other(element: seconds_between, compiler: Any, **kw: Any) -> str:
    raise CompileError(f"seconds_between is not implemented for {compiler.dialect.name}")


class greatest(FunctionElement[float]):  # noqa: N801
    """The largest argument: GREATEST on PostgreSQL, multi-argument max() on SQLite."""

    type = sa.Float()
    name = "greatest"
    inherit_cache = True


class least(FunctionElement[float]):  # noqa: N801
    """The smallest argument: LEAST on PostgreSQL, multi-argument min() on SQLite."""

    type = sa.Float()
    name = "least"
    inherit_cache = True


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _least_sqlite(element: least, compiler: Any, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


@compiles(greatest)
def _greatest_default(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(least)
def _least_default(element: least, compiler: Any, **kw: Any) -> str:
    return f"LEAST({compiler.process(element.clauses, **kw)})"


class likely(FunctionElement[bool]):  # noqa: N801
    """A condition true for most rows: SQLite's likelihood() hint, the bare condition elsewhere."""

    type = sa.Boolean()
    name = "likely"
    inherit_cache = True


@compiles(likely, "sqlite")
def _likely_sqlite(element: likely, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, 0.9375)"


@compiles(likely)
def _likely_default(element: likely, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


def _ts(value: datetime) -> sa.BindParameter[datetime]:
    """A timestamp parameter bound exactly as the columns store it (UTC text on SQLite)."""
    return sa.literal(value, type_=UtcDateTime)


def _num(value: float) -> sa.BindParameter[float]:
    return sa.literal(float(value), type_=sa.Float())


def _overlapping(start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    """Attempts whose running interval can meet [start, end): the indexable part of every query."""
    # Windows are recent (yesterday, this month): nearly every attempt started before their end,
    # while few ended after their start. SQLite has no statistics to tell the two ranges apart, so
    # it is told: the ended_at index (ix_attempt_ended_at) is the one that narrows the scan.
    return sa.and_(
        likely(ATTEMPT.c.started_at < _ts(end)),
        sa.or_(ATTEMPT.c.ended_at.is_(None), ATTEMPT.c.ended_at > _ts(start)),
    )


def _clipped(start: datetime, end: datetime, now: datetime) -> tuple[sa.ColumnElement[float], sa.ColumnElement[float]]:
    """(from, to) of each attempt's running interval inside the window, in seconds after `start`.

    `to` is never below `from`, so to - from is the overlap (0 when they do not meet).
    """
    began = greatest(seconds_between(_ts(start), ATTEMPT.c.started_at), _num(0))
    # A running attempt accrues up to now: its offset is a constant, not a per-row conversion.
    stopped = sa.func.coalesce(
        seconds_between(_ts(start), ATTEMPT.c.ended_at), _num((now - start).total_seconds())
    )
    return began, greatest(least(stopped, _num((end - start).total_seconds())), began)


# --- the CostQueries port ----------------------------------------------------------------------
class SqlCostQueries:
    """core.ports.CostQueries over one session (the caller's transaction: a unit of work's, or its own)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def spent(
        self, *, start: datetime, end: datetime, now: datetime, project: str | None = None, owner: str | None = None
    ) -> float:
        """Total cost in the window, optionally of one project and/or one owner."""
        began, stopped = _clipped(start, end, now)
        stmt = sa.select(sa.func.coalesce(sa.func.sum(ATTEMPT.c.hourly_rate * (stopped - began)), 0.0))
        where = [_overlapping(start, end)]
        if project is not None or owner is not None:
            stmt = stmt.select_from(ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id))
            if project is not None:
                where.append(EXPERIMENT.c.project == project)
            if owner is not None:
                where.append(EXPERIMENT.c.owner == owner)
        else:
            stmt = stmt.select_from(ATTEMPT)
        return float(self._session.execute(stmt.where(*where)).scalar_one()) / 3600.0

    def spend_by(self, key: str, *, start: datetime, end: datetime, now: datetime) -> list[SpendRow]:
        """Cost and GPU-hours in the window grouped by "project" or "owner", most expensive first."""
        if key not in _GROUP_KEYS:
            raise ValueError(f"spend_by groups by one of {sorted(_GROUP_KEYS)}, not {key!r}")
        column = _GROUP_KEYS[key]
        began, stopped = _clipped(start, end, now)
        overlap = stopped - began
        cost = sa.func.sum(ATTEMPT.c.hourly_rate * overlap).label("cost")
        stmt = (
            sa.select(column.label("key"), cost, sa.func.sum(ATTEMPT.c.gpus * overlap).label("gpu_seconds"))
            .select_from(ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id))
            .where(_overlapping(start, end))
            .group_by(column)
            # Keys whose attempts only touched the window's edge (no time inside it) are left out.
            .having(sa.func.sum(overlap) > 0)
            .order_by(cost.desc(), column)
        )
        return [
            SpendRow(key=row.key, cost=float(row.cost) / 3600.0, gpu_hours=float(row.gpu_seconds) / 3600.0)
            for row in self._session.execute(stmt)
        ]


# --- digest helpers (SQL only; not part of the port) -------------------------------------------
def _bucket(x: sa.ColumnElement[float], bounds: list[float], first: int = 0) -> sa.ColumnElement[int]:
    """How many of the ascending `bounds` are <= x (plus `first`), as a balanced CASE tree.

    log2(len(bounds)) comparisons per row instead of a join against a table of days.
    """
    if not bounds:
        return sa.literal(first, type_=sa.Integer())
    mid = len(bounds) // 2
    return sa.case(
        (x < _num(bounds[mid]), _bucket(x, bounds[:mid], first)),
        else_=_bucket(x, bounds[mid + 1:], first + mid + 1),
    )


def daily_spend_by_project(
    session: Session, days: list[tuple[date, datetime, datetime]], now: datetime
) -> dict[date, dict[str, float]]:
    """Cost per project of each (day, start, end) window; the windows must be contiguous and ascending.

    One scan of the attempts meeting the whole range, however many days: each attempt is
    classified by the day its clipped interval begins in and the day it ends in, and summed
    per (project, first day, last day). An attempt within one day is charged to it; one that
    spans days is split (first day from its start, whole days between, last day up to its end).
    """
    if not days:
        return {}
    for (_, _, end), (_, start, _) in zip(days, days[1:]):
        if end != start:
            raise ValueError("daily_spend_by_project needs contiguous, ascending day windows")
    origin, finish = days[0][1], days[-1][2]
    # Day i covers [edges[i], edges[i + 1]) in seconds after origin.
    edges = [(start - origin).total_seconds() for _, start, _ in days] + [(finish - origin).total_seconds()]
    began, stopped = _clipped(origin, finish, now)
    clipped = (
        sa.select(
            EXPERIMENT.c.project.label("project"),
            ATTEMPT.c.hourly_rate.label("rate"),
            began.label("began"),
            stopped.label("stopped"),
        )
        .select_from(ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id))
        .where(_overlapping(origin, finish))
        # OFFSET 0 keeps SQLite and PostgreSQL from flattening this subquery into the aggregate,
        # which would recompute the time conversions in every CASE branch that reads them (3x slower).
        .offset(0)
        .subquery("clipped")
    )
    first_day = _bucket(clipped.c.began, edges[1:-1]).label("first_day")
    last_day = _bucket(clipped.c.stopped, edges[1:-1]).label("last_day")
    stmt = sa.select(
        clipped.c.project,
        first_day,
        last_day,
        sa.func.sum(clipped.c.rate).label("rate"),
        sa.func.sum(clipped.c.rate * clipped.c.began).label("rate_began"),
        sa.func.sum(clipped.c.rate * clipped.c.stopped).label("rate_stopped"),
    ).group_by(clipped.c.project, first_day, last_day)
    seconds: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in session.execute(stmt):  # one row per (project, first day, last day): a few hundred at most
        i, j = row.first_day, row.last_day
        rate, rate_began, rate_stopped = float(row.rate), float(row.rate_began), float(row.rate_stopped)
        if i == j:
            seconds[i][row.project] += rate_stopped - rate_began
            continue
        seconds[i][row.project] += rate * edges[i + 1] - rate_began
        for k in range(i + 1, j):
            seconds[k][row.project] += rate * (edges[k + 1] - edges[k])
        seconds[j][row.project] += rate_stopped - rate * edges[j]
    return {
        day: {project: amount / 3600.0 for project, amount in sorted(seconds[i].items()) if amount > 0}
        for i, (day, _, _) in enumerate(days)
    }


def outcome_counts(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """Experiments that ended SUCCEEDED / FAILED / STOPPED in [start, end), and restarts begun then.

    Keys: succeeded, failed, stopped, restarts (attempts numbered 2 or more created in the window).
    """
    ended = session.execute(
        sa.select(EXPERIMENT.c.state, sa.func.count())
        .where(
            EXPERIMENT.c.state.in_(list(_TERMINAL)),
            EXPERIMENT.c.updated_at >= _ts(start),
            EXPERIMENT.c.updated_at < _ts(end),
        )
        .group_by(EXPERIMENT.c.state)
    ).all()
    counts = {name: 0 for name in _TERMINAL.values()}
    counts.update({_TERMINAL[state]: int(n) for state, n in ended})
    counts["restarts"] = int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(ATTEMPT)
            .where(ATTEMPT.c.number > 1, ATTEMPT.c.created_at >= _ts(start), ATTEMPT.c.created_at < _ts(end))
        ).scalar_one()
    )
    return counts


def successful_in(session: Session, start: datetime, end: datetime) -> int:
    """How many experiments succeeded in [start, end)."""
    return int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(EXPERIMENT)
            .where(
                EXPERIMENT.c.state == "SUCCEEDED",
                EXPERIMENT.c.updated_at >= _ts(start),
                EXPERIMENT.c.updated_at < _ts(end),
            )
        ).scalar_one()
    )
