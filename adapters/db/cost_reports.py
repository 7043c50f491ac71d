"""Cost and outcome queries for the daily digest (SQL only; not part of the CostQueries port)."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db.cost_sql import ATTEMPT, EXPERIMENT, clipped_interval, num, overlapping, ts

_TERMINAL = {"SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"}


def _bucket(x: sa.ColumnElement[float], bounds: list[float], first: int = 0) -> sa.ColumnElement[int]:
    """How many of the ascending `bounds` are <= x (plus `first`), as a balanced CASE tree.

    log2(len(bounds)) comparisons per row instead of a join against a table of days.
    """
    if not bounds:
        return sa.literal(first, type_=sa.Integer())
    mid = len(bounds) // 2
    return sa.case(
        (x < num(bounds[mid]), _bucket(x, bounds[:mid], first)),
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
    began, stopped = clipped_interval(origin, finish, now)
    clipped = (
        sa.select(
            EXPERIMENT.c.project.label("project"),
            ATTEMPT.c.hourly_rate.label("rate"),
            began.label("began"),
            stopped.label("stopped"),
        )
        .select_from(ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id))
        .where(overlapping(origin, finish))
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
            EXPERIMENT.c.updated_at >= ts(start),
            EXPERIMENT.c.updated_at < ts(end),
        )
        .group_by(EXPERIMENT.c.state)
    ).all()
    counts = {name: 0 for name in _TERMINAL.values()}
    counts.update({_TERMINAL[state]: int(n) for state, n in ended})
    counts["restarts"] = int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(ATTEMPT)
            .where(ATTEMPT.c.number > 1, ATTEMPT.c.created_at >= ts(start), ATTEMPT.c.created_at < ts(end))
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
                EXPERIMENT.c.updated_at >= ts(start),
                EXPERIMENT.c.updated_at < ts(end),
            )
        ).scalar_one()
    )
