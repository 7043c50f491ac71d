"""The store aggregates behind /metrics, on SQLite and PostgreSQL: the figures of known attempts."""
from __future__ import annotations

import pytest

from adapters.db import metrics_queries as q
from adapters.db.cost_queries import SqlCostQueries
from adapters.db.engine import make_session_factory
from tests.integration.conftest import T0, Store, at
from tests.integration.cost_fixtures import ran

@pytest.fixture
def session(sql_store: Store):
    # nlp: two attempts of 1 GPU at 2.0/h, one hour each, restarted 60 s after the first ended.
    # vision: one attempt of 2 GPUs at 4.0/h, running for the last hour (up to NOW).
    sql_store.save(
        ran("a", [(at(0), at(60), 2.0), (at(61), at(121), 2.0)], owner="alice", project="nlp", gpus=1, gpu_type="a100"),
        ran("b", [(at(10), None, 4.0)], finish=False, owner="bob", project="vision", gpus=2, gpu_type="h100"),
    )
    assert sql_store.engine is not None
    with make_session_factory(sql_store.engine)() as s:
        yield s


def test_usage_prices_every_attempt_as_the_cost_queries_do(session):
    def usage(start, end):
        return {(u.project, u.owner, u.gpu_type): (u.cost, u.gpu_hours) for u in q.usage(session, start, end, at(130))}

    everything = usage(T0, at(130))
    assert everything.keys() == {("nlp", "alice", "a100"), ("vision", "bob", "h100")}
    assert everything[("nlp", "alice", "a100")] == pytest.approx((2.0 * 2, 2.0))
    assert everything[("vision", "bob", "h100")] == pytest.approx((4.0 * 2, 2 * 2.0))  # running: up to now
    window = {r.key: r.cost for r in SqlCostQueries(session).spend_by("project", start=T0, end=at(130), now=at(130))}
    assert window == pytest.approx({project: cost for (project, _, _), (cost, _) in everything.items()})
    # Split at any moment, the two parts add up to the whole (the collector keeps the part before today).
    before, after = usage(T0, at(45)), usage(at(45), at(130))
    for key, (cost, hours) in everything.items():
        assert before.get(key, (0, 0))[0] + after.get(key, (0, 0))[0] == pytest.approx(cost)
        assert before.get(key, (0, 0))[1] + after.get(key, (0, 0))[1] == pytest.approx(hours)
    assert usage(T0, at(45))[("vision", "bob", "h100")] == pytest.approx((4.0 * 35 / 60, 2 * 35 / 60))


def test_attempts_restarts_and_experiments(session):
    assert q.attempts_started(session) == 3
    assert q.attempts_ended(session) == {"infra": 1, "none": 1}
    assert q.restarts_by_budget(session) == {"user": 0, "infra": 1, "none": 0}
    assert sorted(q.experiments_by_state(session)) == [("RUNNING", "vision", 1), ("SUCCEEDED", "nlp", 1)]


def test_outbox_backlog_counts_undelivered_events_from_the_oldest(session):
    count, oldest = q.outbox_backlog(session)
    assert count > 0 and oldest == T0
