"""core.digest_ports.DigestQueries over one SQLAlchemy session: the digest's reads in one view."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db import cost_queries, failure_queries
from adapters.db.rows import ExperimentRow
from core.digest_ports import DayWindow
from core.node_health import AUDIT_NODE
from core.ports import SpendRow


class SqlDigestQueries:
    """The digest's queries, each aggregated in SQL (see adapters.db.cost_queries and failure_queries)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._costs = cost_queries.SqlCostQueries(session)

    def spend_by(self, key: str, *, start: datetime, end: datetime, now: datetime) -> list[SpendRow]:
        """Spend per project or owner in [start, end) (the cost queries' own)."""
        return self._costs.spend_by(key, start=start, end=end, now=now)

    def daily_spend_by_project(self, days: list[DayWindow], now: datetime) -> dict[date, dict[str, float]]:
        """Cost per project of each day window, in one scan."""
        return cost_queries.daily_spend_by_project(self._session, days, now)

    def outcome_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Experiments ended per outcome in [start, end), and restarts begun then."""
        return cost_queries.outcome_counts(self._session, start, end)

    def successful_in(self, start: datetime, end: datetime) -> int:
        """How many experiments succeeded in [start, end)."""
        return cost_queries.successful_in(self._session, start, end)

    def infra_failures_by_class(self, start: datetime, end: datetime) -> dict[str, int]:
        """Infrastructure failures ended in [start, end), by failure class."""
        return failure_queries.infra_failures_by_class(self._session, start, end)

    def node_reports(self, start: datetime, end: datetime) -> list[dict]:
        """The sick-node reports (core.node_health's audit entries) made in [start, end)."""
        return failure_queries.node_reports(self._session, start, end, AUDIT_NODE)


def first_launch_at(session_factory: Callable[[], Session]) -> datetime | None:
    """When the first experiment stored was launched: where expbot's records begin (None: none yet)."""
    created = ExperimentRow.__table__.c.created_at
    with session_factory() as session:
        return session.execute(sa.select(sa.func.min(created))).scalar_one()


@contextmanager
def open_digest_queries(session_factory: Callable[[], Session]) -> Iterator[SqlDigestQueries]:
    """The digest's queries on a session of their own, closed when the digest has read what it needs."""
    with session_factory() as session:
        yield SqlDigestQueries(session)
