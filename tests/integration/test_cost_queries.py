"""The cost queries' contract: the fake, SQLite and PostgreSQL charge every window alike."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from adapters.db.cost_queries import SqlCostQueries, daily_spend_by_project, outcome_counts, successful_in
from adapters.db.engine import make_session_factory
from core.digest import day_window
from core.model import FailureClass
from core.ports import SpendRow
from tests.integration.conftest import Store, at
from tests.integration.cost_fixtures import open_costs, ran  # noqa: F401  (fixture)

approx = pytest.approx


def window(start: float, end: float) -> dict[str, datetime]:
    return {"start": at(start), "end": at(end)}


# --- clipping -----------------------------------------------------------------------------------
def test_an_attempt_is_clipped_to_the_window(store: Store, open_costs) -> None:
    store.save(ran("clip", [(at(0), at(120), 6.0)]))  # $6/h for two hours
    costs = open_costs()
    now = at(1000)
    assert costs.spent(**window(30, 90), now=now) == approx(6.0)  # the middle hour only
    assert costs.spent(**window(-60, 60), now=now) == approx(6.0)  # starts before the window
    assert costs.spent(**window(60, 600), now=now) == approx(6.0)  # ends after it
    assert costs.spent(**window(-600, 600), now=now) == approx(12.0)  # all of it
    assert costs.spent(**window(-60, 0), now=now) == 0.0  # ends where the attempt starts
    assert costs.spent(**window(120, 180), now=now) == 0.0  # starts where it ends
    assert costs.spent(**window(200, 300), now=now) == 0.0


def test_a_running_attempt_accrues_up_to_now(store: Store, open_costs) -> None:
    store.save(ran("live", [(at(0), None, 4.0)]))
    costs = open_costs()
    assert costs.spent(**window(0, 120), now=at(90)) == approx(6.0)  # 90 minutes so far
    assert costs.spent(**window(0, 120), now=at(300)) == approx(8.0)  # clipped at the window's end
    assert costs.spent(**window(60, 120), now=at(30)) == 0.0  # now is before the window
    assert costs.spent(**window(-60, 0), now=at(30)) == 0.0


def test_several_attempts_are_never_double_counted(store: Store, open_costs) -> None:
    exp = ran("restarted", [(at(0), at(60), 2.0), (at(70), at(130), 2.0), (at(140), None, 4.0)])
    store.save(exp)
    costs, now = open_costs(), at(200)
    total = costs.spent(**window(-1000, 1000), now=now)
    assert total == approx(2.0 + 2.0 + 4.0) == approx(exp.cost(now))
    # Windows that partition time add up to the total, however they cut the attempts.
    cuts = [-1000, 30, 65, 100, 135, 170, 1000]
    parts = [costs.spent(**window(a, b), now=now) for a, b in zip(cuts, cuts[1:])]
    assert sum(parts) == approx(total)
    assert parts[2] == approx(1.0)  # [65, 100): the restart gap, then 30 minutes of attempt 2
    assert costs.spend_by("project", **window(-1000, 1000), now=now) == [SpendRow("default", approx(8.0), 0.0)]


def test_filters_by_project_and_owner(store: Store, open_costs) -> None:
    store.save(
        ran("a", [(at(0), at(60), 10.0)], owner="alice", project="vision"),
        ran("b", [(at(0), at(60), 20.0)], owner="bob", project="vision"),
        ran("c", [(at(0), at(60), 40.0)], owner="alice", project="nlp"),
    )
    costs, w, now = open_costs(), window(0, 60), at(60)
    assert costs.spent(**w, now=now) == approx(70.0)
    assert costs.spent(**w, now=now, project="vision") == approx(30.0)
    assert costs.spent(**w, now=now, owner="alice") == approx(50.0)
    assert costs.spent(**w, now=now, project="vision", owner="alice") == approx(10.0)
    assert costs.spent(**w, now=now, project="none") == 0.0


def test_spend_by_orders_by_cost_and_counts_gpu_hours(store: Store, open_costs) -> None:
    store.save(
        ran("a", [(at(0), at(90), 10.0)], owner="alice", project="vision", gpus=4, gpu_type="a100"),
        ran("b", [(at(0), at(60), 30.0)], owner="bob", project="nlp", gpus=2, gpu_type="a100"),
        ran("c", [(at(30), at(60), 30.0)], owner="carol", project="speech", gpus=1, gpu_type="a100"),
        ran("d", [(at(30), at(60), 30.0)], owner="dave", project="audio", gpus=1, gpu_type="a100"),
        ran("e", [(at(500), at(600), 99.0)], owner="erin", project="later"),  # outside the window
    )
    costs, w, now = open_costs(), window(0, 60), at(1000)
    by_project = costs.spend_by("project", **w, now=now)
    assert [r.key for r in by_project] == ["nlp", "audio", "speech", "vision"]  # ties by name
    assert by_project == [
        SpendRow("nlp", approx(30.0), approx(2.0)),
        SpendRow("audio", approx(15.0), approx(0.5)),
        SpendRow("speech", approx(15.0), approx(0.5)),
        SpendRow("vision", approx(10.0), approx(4.0)),  # clipped to the window: 60 of 90 minutes
    ]
    by_owner = costs.spend_by("owner", **w, now=now)
    assert [(r.key, r.cost) for r in by_owner] == [
        ("bob", approx(30.0)), ("carol", approx(15.0)), ("dave", approx(15.0)), ("alice", approx(10.0)),
    ]
    assert costs.spend_by("project", **window(2000, 3000), now=now) == []
    with pytest.raises(ValueError):
        costs.spend_by("gpu_type", **w, now=now)


def test_attempts_that_never_ran_cost_nothing(store: Store, open_costs) -> None:
    queued = ran("q", [(at(0), at(60), 5.0)], finish=False)
    queued.schedule_restart(at(70), "infra", "preempted", None, at(60))
    queued.start_attempt(None, at(70), hourly_rate=5.0)  # handed to the cluster, never running
    store.save(queued)
    assert open_costs().spent(**window(-100, 1000), now=at(1000)) == approx(5.0)


# --- SQL-only digest helpers --------------------------------------------------------------------
def _session(sql_store: Store):
    assert sql_store.engine is not None
    return make_session_factory(sql_store.engine)()


def test_daily_spend_splits_attempts_across_days_and_dst(sql_store: Store) -> None:
    tz = "Europe/Berlin"  # 2026-10-25 has 25 hours there
    days = [(d, *day_window(d, tz)) for d in (date(2026, 10, 24) + timedelta(days=i) for i in range(4))]
    start0 = days[0][1]
    h = lambda hours: start0 + timedelta(hours=hours)  # noqa: E731
    sql_store.save(
        ran("long", [(h(-5), h(60), 1.0)], project="vision"),  # starts before the range, spans three days
        ran("short", [(h(30), h(31), 10.0)], project="nlp"),
        ran("two", [(h(2), h(3), 3.0), (h(49), h(51), 3.0)], project="nlp"),
        ran("live", [(h(90), None, 2.0)], project="vision"),  # running: accrues to now
        ran("old", [(h(-50), h(-40), 100.0)], project="old"),  # before the range
    )
    now = h(94)
    with _session(sql_store) as session:
        daily = daily_spend_by_project(session, days, now)
        costs = SqlCostQueries(session)
        for day, start, end in days:
            expected = {r.key: r.cost for r in costs.spend_by("project", start=start, end=end, now=now)}
            assert daily[day] == approx(expected), day
    assert daily[date(2026, 10, 24)] == approx({"vision": 24.0, "nlp": 3.0})
    assert daily[date(2026, 10, 25)] == approx({"vision": 25.0, "nlp": 10.0})  # the 25-hour day
    assert daily[date(2026, 10, 26)] == approx({"vision": 11.0, "nlp": 6.0})
    assert daily[date(2026, 10, 27)] == approx({"vision": 8.0})
    with _session(sql_store) as session, pytest.raises(ValueError):
        daily_spend_by_project(session, [days[0], days[2]], now)
    with _session(sql_store) as session:
        assert daily_spend_by_project(session, [], now) == {}


def test_outcomes_and_successes_in_a_window(sql_store: Store) -> None:
    ok = ran("ok", [(at(0), at(30), 1.0)])
    flaky = ran("flaky", [(at(0), at(10), 1.0), (at(20), at(40), 1.0)])  # one restart at 20
    failed = ran("failed", [(at(0), at(50), 1.0)], finish=False)
    failed.fail("bad config", at(50))
    stopped = ran("stopped", [(at(0), None, 1.0)])
    stopped.end_attempt(None, "stopped", FailureClass.STOPPED, at(55))
    stopped.stop("bob", "enough", at(55))
    late = ran("late", [(at(100), at(200), 1.0)])
    sql_store.save(ok, flaky, failed, stopped, late)
    with _session(sql_store) as session:
        assert outcome_counts(session, at(0), at(60)) == {"succeeded": 2, "failed": 1, "stopped": 1, "restarts": 1}
        assert outcome_counts(session, at(25), at(60)) == {"succeeded": 2, "failed": 1, "stopped": 1, "restarts": 0}
        assert successful_in(session, at(0), at(60)) == 2
        assert successful_in(session, at(0), at(300)) == 3
        assert successful_in(session, at(300), at(400)) == 0


def test_timestamps_with_other_offsets_are_compared_in_utc(store: Store, open_costs) -> None:
    plus_two = timezone(timedelta(hours=2))
    store.save(ran("tz", [(at(0), at(60), 6.0)]))
    costs = open_costs()
    start = at(30).astimezone(plus_two)  # the same instant, written in another zone
    assert costs.spent(start=start, end=at(90).astimezone(plus_two), now=at(1000)) == approx(3.0)
