"""Cost read queries: spend over time windows, aggregated in SQL (SQLite and PostgreSQL alike).

An attempt costs `hourly_rate` per wall hour between `started_at` and `ended_at` (a running
attempt: up to `now`); the part of that interval inside a window [start, end) is what the window
is charged. Every query narrows attempts with `started_at < end AND (ended_at IS NULL OR
ended_at > start)`; for the recent windows that reports ask about, the index on ended_at is
the one that bounds the scan (see adapters.db.cost_sql.overlapping).
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db.cost_reports import daily_spend_by_project, outcome_counts, successful_in
from adapters.db.cost_sql import ATTEMPT, EXPERIMENT, clipped_interval, overlapping
from adapters.db.cost_sql import ts as _ts
from core.ports import SpendRow

# The digest queries and the SQL pieces moved out; the names callers import from here stay
# (adapters.db.failure_queries binds its timestamps with _ts).
__all__ = ["SqlCostQueries", "_ts", "daily_spend_by_project", "outcome_counts", "successful_in"]

_GROUP_KEYS = {"project": EXPERIMENT.c.project, "owner": EXPERIMENT.c.owner}


class SqlCostQueries:
    """core.ports.CostQueries over one session (the caller's transaction: a unit of work's, or its own)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def spent(
        self, *, start: datetime, end: datetime, now: datetime, project: str | None = None, owner: str | None = None
    ) -> float:
        """Total cost in the window, optionally of one project and/or one owner."""
        began, stopped = clipped_interval(start, end, now)
        stmt = sa.select(sa.func.coalesce(sa.func.sum(ATTEMPT.c.hourly_rate * (stopped - began)), 0.0))
        where = [overlapping(start, end)]
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
        began, stopped = clipped_interval(start, end, now)
        overlap = stopped - began
        cost = sa.func.sum(ATTEMPT.c.hourly_rate * overlap).label("cost")
        stmt = (
            sa.select(column.label("key"), cost, sa.func.sum(ATTEMPT.c.gpus * overlap).label("gpu_seconds"))
            .select_from(ATTEMPT.join(EXPERIMENT, EXPERIMENT.c.id == ATTEMPT.c.experiment_id))
            .where(overlapping(start, end))
            .group_by(column)
            # Keys whose attempts only touched the window's edge (no time inside it) are left out.
            .having(sa.func.sum(overlap) > 0)
            .order_by(cost.desc(), column)
        )
        return [
            SpendRow(key=row.key, cost=float(row.cost) / 3600.0, gpu_hours=float(row.gpu_seconds) / 3600.0)
            for row in self._session.execute(stmt)
        ]
