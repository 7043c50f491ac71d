"""In-memory DigestQueries over a FakeDatabase: the reference the SQL digest queries are contract-tested against."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime

from core.model import Experiment
from core.node_health import AUDIT_NODE
from core.policy import INFRASTRUCTURE
from core.ports import SpendRow
from tests.fakes.costs import FakeCostQueries, overlap_seconds
from tests.fakes.store import FakeDatabase

_TERMINAL = {"SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"}


class FakeDigestQueries:
    """core.digest_ports.DigestQueries computed in Python from the fake store's committed state."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self._costs = FakeCostQueries(db)

    def _experiments(self) -> list[Experiment]:
        with self._db.lock:
            return list(self._db.experiments.values())

    def spend_by(self, key: str, *, start: datetime, end: datetime, now: datetime) -> list[SpendRow]:
        return self._costs.spend_by(key, start=start, end=end, now=now)

    def daily_spend_by_project(
        self, days: list[tuple[date, datetime, datetime]], now: datetime
    ) -> dict[date, dict[str, float]]:
        for (_, _, end), (_, start, _) in zip(days, days[1:]):
            if end != start:
                raise ValueError("daily_spend_by_project needs contiguous, ascending day windows")
        daily: dict[date, dict[str, float]] = {}
        for day, start, end in days:
            spent: dict[str, float] = {}
            for exp in self._experiments():
                for a in exp.attempts:
                    spent[exp.spec.project] = spent.get(exp.spec.project, 0.0) + (
                        a.hourly_rate * overlap_seconds(a, start, end, now) / 3600.0)
            daily[day] = {p: c for p, c in sorted(spent.items()) if c > 0}
        return daily

    def outcome_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        counts = {name: 0 for name in _TERMINAL.values()}
        for exp in self._experiments():
            if str(exp.state) in _TERMINAL and _within(exp.updated_at, start, end):
                counts[_TERMINAL[str(exp.state)]] += 1
        counts["restarts"] = sum(1 for exp in self._experiments() for a in exp.attempts
                                 if a.number > 1 and start <= a.created_at < end)
        return counts

    def successful_in(self, start: datetime, end: datetime) -> int:
        return sum(1 for exp in self._experiments() if str(exp.state) == "SUCCEEDED" and _within(exp.updated_at, start, end))

    def infra_failures_by_class(self, start: datetime, end: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for exp in self._experiments():
            for a in exp.attempts:
                if a.failure_class in INFRASTRUCTURE and _within(a.ended_at, start, end):
                    counts[str(a.failure_class)] = counts.get(str(a.failure_class), 0) + 1
        return counts

    def node_reports(self, start: datetime, end: datetime) -> list[dict]:
        with self._db.lock:
            entries = list(self._db.audit)
        return [dict(e["detail"]) for e in entries if e["action"] == AUDIT_NODE and start <= e["at"] < end]


def _within(at: datetime | None, start: datetime, end: datetime) -> bool:
    return at is not None and start <= at < end


@contextmanager
def open_fake_digest_queries(db: FakeDatabase) -> Iterator[FakeDigestQueries]:
    """The fake's counterpart of adapters.db.digest_queries.open_digest_queries."""
    yield FakeDigestQueries(db)
