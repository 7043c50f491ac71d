"""Spend per project of closed days, kept so that each digest reads history instead of recomputing it.

A day is closed once its end has passed: attempts only ever grow forward in time (a running
attempt accrues up to now, an ended one keeps its interval), so a closed day's spend never
changes. Keeping it turns the digest's month-to-date and 14-day chart from a scan of every
attempt of the month into a scan of one day's attempts.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapters.db.engine import write_transaction
from adapters.db.rows_cost import SpendDayRow

SPEND_DAY = SpendDayRow.__table__


class SpendDays:
    """Closed days' spend per project, keyed by (time zone, local day)."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def get(self, tz: str, first: date, last: date) -> dict[date, dict[str, float]]:
        """The kept days from `first` through `last` (days never kept are simply absent)."""
        with self._session_factory() as session:
            rows = session.execute(
                sa.select(SPEND_DAY.c.day, SPEND_DAY.c.costs).where(
                    SPEND_DAY.c.timezone == tz,
                    SPEND_DAY.c.day >= first.isoformat(),  # ISO dates: text order is date order
                    SPEND_DAY.c.day <= last.isoformat(),
                )
            ).all()
        return {date.fromisoformat(day): {p: float(c) for p, c in costs.items()} for day, costs in rows}

    def put(self, tz: str, days: dict[date, dict[str, float]], at: datetime) -> None:
        """Keep closed days' spend; a day already kept (by another replica, say) is left as it is."""
        if not days:
            return
        values = [
            {"timezone": tz, "day": day.isoformat(), "costs": costs, "computed_at": at} for day, costs in days.items()
        ]
        with self._session_factory() as session, write_transaction(session) as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(SPEND_DAY).on_conflict_do_nothing(), values)
