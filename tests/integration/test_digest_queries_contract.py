"""The digest queries' contract: the fake, SQLite and PostgreSQL answer every digest read alike."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta

import pytest

from adapters.db.digest_queries import open_digest_queries
from adapters.db.engine import make_session_factory
from core.digest import day_window
from core.digest_ports import DigestQueries
from core.model import FailureClass
from core.node_health import AUDIT_NODE
from core.ports import SpendRow
from tests.fakes.digest_queries import open_fake_digest_queries
from tests.integration.conftest import T0, Store, at, new_experiment
from tests.integration.cost_fixtures import ran

approx = pytest.approx


@pytest.fixture
def open_digest(store: Store) -> Callable[[], AbstractContextManager[DigestQueries]]:
    """Opens the digest's queries on the store under test, as bootstrap wires them for each kind."""
    if store.kind == "fake":
        with store.new_uow() as uow:
            db = uow.db  # type: ignore[attr-defined]
        return lambda: open_fake_digest_queries(db)
    assert store.engine is not None
    factory = make_session_factory(store.engine)
    return lambda: open_digest_queries(factory)


def test_spend_per_project_owner_and_day(store: Store, open_digest) -> None:
    # $2/h for 36 hours from T0 (09:00) across two day boundaries, and a running $1/h job.
    store.save(ran("long", [(at(0), at(36 * 60), 2.0)], project="nlp", owner="ana", gpus=2),
               ran("live", [(at(60), None, 1.0)], project="vision", owner="bob"))
    day = T0.date()
    days = [(d, *day_window(d, "UTC")) for d in (day + timedelta(days=n) for n in range(3))]
    now = at(30 * 60)  # 15:00 on the next day: "live" still runs, "long" runs until 21:00
    with open_digest() as queries:
        assert queries.spend_by("project", start=at(0), end=at(120), now=now) == [
            SpendRow("nlp", approx(4.0), approx(4.0)), SpendRow("vision", approx(1.0), 0.0)]
        assert [r.key for r in queries.spend_by("owner", start=at(0), end=at(120), now=now)] == ["ana", "bob"]
        daily = queries.daily_spend_by_project(days, now)
    assert daily == {
        day: {"nlp": approx(30.0), "vision": approx(14.0)},  # 15 h from 09:00; 14 h from 10:00
        day + timedelta(days=1): {"nlp": approx(42.0), "vision": approx(15.0)},  # until 21:00; until 15:00 (now)
        day + timedelta(days=2): {},
    }


def test_outcomes_and_successes(store: Store, open_digest) -> None:
    ok = ran("ok", [(at(0), at(30), 1.0)])
    flaky = ran("flaky", [(at(0), at(10), 1.0), (at(20), at(40), 1.0)])  # one restart at 20
    failed = ran("failed", [(at(0), at(50), 1.0)], finish=False)
    failed.fail("bad config", at(50))
    stopped = ran("stopped", [(at(0), None, 1.0)])
    stopped.end_attempt(None, "stopped", FailureClass.STOPPED, at(55))
    stopped.stop("bob", "enough", at(55))
    store.save(ok, flaky, failed, stopped, ran("late", [(at(100), at(200), 1.0)]))
    with open_digest() as queries:
        assert queries.outcome_counts(at(0), at(60)) == {"succeeded": 2, "failed": 1, "stopped": 1, "restarts": 1}
        assert queries.outcome_counts(at(25), at(60)) == {"succeeded": 2, "failed": 1, "stopped": 1, "restarts": 0}
        assert queries.successful_in(at(0), at(60)) == 2
        assert queries.successful_in(at(0), at(300)) == 3
        assert queries.successful_in(at(300), at(400)) == 0


def test_infrastructure_failures_by_cause_and_node_reports(store: Store, open_digest) -> None:
    exp = new_experiment("xid")
    exp.start_attempt(None, at(0))
    exp.mark_running(at(0), node="gpu-a100-3")
    exp.end_attempt(1, "hardware fault (Xid 79)", FailureClass.HARDWARE, at(10))
    exp.schedule_restart(at(10), "infra", "hardware", None, at(10))
    exp.start_attempt(None, at(10))
    exp.mark_running(at(10), node="gpu-b")
    exp.end_attempt(None, "Evicted", FailureClass.INFRA, at(20))
    exp.schedule_restart(at(20), "infra", "preempted", None, at(20))
    exp.start_attempt(None, at(20))
    exp.mark_running(at(20), node="gpu-c")
    exp.end_attempt(1, "Traceback", FailureClass.USER, at(30))  # the code's own: not counted
    store.save(exp)
    with store.new_uow() as uow:
        for minute, node in ((5, "gpu-a100-3"), (15, "gpu-b"), (100, "gpu-later")):
            uow.audit.record(at=at(minute), actor="expbot", action=AUDIT_NODE, experiment_id=exp.id,
                             detail={"node": node, "experiments": 3, "faults": 4, "window_hours": 24})
        uow.audit.record(at=at(6), actor="expbot", action="node-cordon", experiment_id=None, detail={"node": "x"})
        uow.commit()
    with open_digest() as queries:
        assert queries.infra_failures_by_class(at(0), at(60)) == {"hardware": 1, "infra": 1}
        assert queries.infra_failures_by_class(at(15), at(60)) == {"infra": 1}
        assert [r["node"] for r in queries.node_reports(at(0), at(60))] == ["gpu-a100-3", "gpu-b"]
        assert queries.node_reports(at(0), at(60))[0] == {"node": "gpu-a100-3", "experiments": 3, "faults": 4,
                                                          "window_hours": 24}
        assert queries.node_reports(at(200), at(300)) == []

