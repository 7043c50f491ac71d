"""In-memory CostQueries over a FakeDatabase: the reference the SQL queries are contract-tested against."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from core.model import Attempt, Experiment
from core.ports import SpendRow
from tests.fakes.store import FakeDatabase


def overlap_seconds(attempt: Attempt, start: datetime, end: datetime, now: datetime) -> float:
    """Seconds of the attempt's running interval (up to `now` if it still runs) inside [start, end)."""
    if attempt.started_at is None:
        return 0.0
    began = max(attempt.started_at, start)
    stopped = min(attempt.ended_at or now, end)
    return max(0.0, (stopped - began).total_seconds())


class FakeCostQueries:
    """core.ports.CostQueries computed in Python from the fake store's committed experiments."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def _attempts(self) -> Iterator[tuple[Experiment, Attempt]]:
        with self._db.lock:
            experiments = list(self._db.experiments.values())
        for exp in experiments:
            for attempt in exp.attempts:
                yield exp, attempt

    def spent(
        self, *, start: datetime, end: datetime, now: datetime, project: str | None = None, owner: str | None = None
    ) -> float:
        return sum(
            a.hourly_rate * overlap_seconds(a, start, end, now) / 3600.0
            for exp, a in self._attempts()
            if (project is None or exp.spec.project == project) and (owner is None or exp.owner == owner)
        )

    def spend_by(self, key: str, *, start: datetime, end: datetime, now: datetime) -> list[SpendRow]:
        if key not in ("project", "owner"):
            raise ValueError(f"spend_by groups by one of ['owner', 'project'], not {key!r}")
        cost: dict[str, float] = defaultdict(float)
        gpu_hours: dict[str, float] = defaultdict(float)
        seconds: dict[str, float] = defaultdict(float)
        for exp, a in self._attempts():
            name = exp.spec.project if key == "project" else exp.owner
            overlap = overlap_seconds(a, start, end, now)
            seconds[name] += overlap
            cost[name] += a.hourly_rate * overlap / 3600.0
            gpu_hours[name] += a.gpus * overlap / 3600.0
        rows = [SpendRow(name, cost[name], gpu_hours[name]) for name in seconds if seconds[name] > 0]
        return sorted(rows, key=lambda r: (-r.cost, r.key))
