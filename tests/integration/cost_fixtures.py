"""Fixtures for the cost queries' contract: a CostQueries per store kind (fake, SQLite, PostgreSQL).

Import the fixtures into a test module: `from tests.integration.cost_fixtures import open_costs`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from adapters.db.cost_queries import SqlCostQueries
from adapters.db.engine import make_session_factory
from core.model import Experiment, FailureClass
from core.ports import CostQueries
from tests.fakes.costs import FakeCostQueries
from tests.integration.conftest import Store, new_experiment

Interval = tuple[datetime, datetime | None, float]  # started, ended (None: still running), hourly rate


@pytest.fixture
def open_costs(store: Store) -> Iterator[Callable[[], CostQueries]]:
    """Opens CostQueries on the store under test; each call reads what is committed by then."""
    sessions = []

    def open_() -> CostQueries:
        if store.kind == "fake":
            with store.new_uow() as uow:
                return FakeCostQueries(uow.db)  # type: ignore[attr-defined]
        assert store.engine is not None
        session = make_session_factory(store.engine)()
        sessions.append(session)
        return SqlCostQueries(session)

    try:
        yield open_
    finally:
        for session in sessions:
            session.close()


def ran(name: str, intervals: list[Interval], *, finish: bool = True, **kwargs: object) -> Experiment:
    """An experiment whose attempts ran over `intervals` (each restarted after the previous one ended).

    With `finish`, an experiment whose last attempt ended is marked SUCCEEDED at that time.
    """
    first = intervals[0][0]
    exp = new_experiment(name, created=kwargs.pop("created", first), **kwargs)  # type: ignore[arg-type]
    for n, (started, ended, rate) in enumerate(intervals):
        if n:
            previous_end = intervals[n - 1][1]
            assert previous_end is not None, "only the last attempt may still be running"
            exp.schedule_restart(started, "infra", "preempted", None, previous_end)
        exp.start_attempt(None, started, hourly_rate=rate)
        exp.mark_running(started)
        if ended is not None:
            last = n == len(intervals) - 1
            code, failure = (0, FailureClass.NONE) if last and finish else (143, FailureClass.INFRA)
            exp.end_attempt(code, "done" if code == 0 else "preempted", failure, ended)
            if last and finish:
                exp.succeed(ended)
    return exp
