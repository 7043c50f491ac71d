"""The store aggregates behind /metrics, on SQLite and PostgreSQL: the figures of known attempts."""
from __future__ import annotations

from datetime import timedelta

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


def _spend(collector) -> dict[tuple[str, str, str], float]:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    registry.register(collector)
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {(s.labels["project"], s.labels["user"], s.labels["gpu_type"]): s.value
            for f in families if f.name == "expbot_spend" for s in f.samples if s.name == "expbot_spend_total"}


def test_the_spend_counter_keeps_past_days_and_adds_each_day_that_ends(sql_store: Store):
    from adapters.db.uow import SqlUnitOfWork
    from bot.telemetry.store import StoreCollector
    from core.budget import BudgetConfig
    from tests.fakes.clock import FakeClock

    # 2.0/h from 23:00 on day 1 to 01:00 on day 3 (26 h); 4.0/h from 22:00 on day 2, still running.
    day1 = T0.replace(hour=0)
    sql_store.save(ran("long", [(day1.replace(hour=23), day1.replace(hour=23) + timedelta(hours=26), 2.0)], owner="alice"),
                   ran("late", [(day1 + timedelta(days=1, hours=22), None, 4.0)], finish=False, owner="bob"))
    assert sql_store.engine is not None
    factory = make_session_factory(sql_store.engine)
    clock = FakeClock(day1 + timedelta(days=1, hours=23))  # day 2, 23:00

    def collector() -> StoreCollector:
        return StoreCollector(factory, lambda: SqlUnitOfWork(factory), clock, BudgetConfig(), lambda: 0.0)

    kept = collector()
    first = _spend(kept)
    assert sum(first.values()) == pytest.approx(2.0 * 24 + 4.0 * 1)
    clock.advance(hours=3)  # day 3, 02:00: day 2 has ended and joins the kept part
    later = _spend(kept)
    assert later == pytest.approx(_spend(collector()))  # the same as read afresh
    assert sum(later.values()) == pytest.approx(2.0 * 26 + 4.0 * 4)
    assert all(later[key] >= first[key] for key in first)  # a counter: never down
