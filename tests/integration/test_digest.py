"""The daily digest end to end: a seeded database, the runner, and a local Slack Web API."""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from adapters.db.digest_runs import DigestRuns
from adapters.db.engine import make_engine, make_session_factory
from adapters.db.spend_days import SPEND_DAY, SpendDays
from adapters.db.digest_queries import open_digest_queries
from bot.digest import slack_publisher
from core.cost import Prices
from core.digest import DigestData
from core.digest_service import DigestService
from tests.integration.conftest import Store
from tests.integration.cost_fixtures import ran
from tests.slack.fake_slack_api import FakeSlackApi

CHANNEL = "C0DIGEST"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)  # the digest of Sat 21 Nov is due
DAY = date(2026, 11, 21)


def h(day: int, hour: float) -> datetime:
    return datetime(2026, 11, day, tzinfo=timezone.utc) + timedelta(hours=hour)


def seed(store: Store) -> None:
    """Sat 21 Nov: vision $60 (24 GPU-h), nlp $20, a running job $8; Fri 20 Nov: nlp $10."""
    store.save(
        ran("a", [(h(21, 2), h(21, 8), 10.0)], owner="U0ALICE", project="vision", gpus=4, gpu_type="a100"),
        ran("b", [(h(20, 22), h(21, 4), 5.0)], owner="bob", project="nlp", gpus=2, gpu_type="a100"),
        ran("c", [(h(21, 20), None, 2.0)], owner="bob", project="nlp"),
    )


def service(session_factory, client: WebClient | None = None, *, budgets: dict[str, float] | None = None,
            tz: str = "UTC", kept: SpendDays | None = None, **more: object) -> DigestService:
    """The digest service as bootstrap builds it, on this database and this Slack (a real chart, no pacing waits)."""
    from bot.digest import draw_chart

    sleep = more.pop("sleep", lambda _: None)
    return DigestService(
        open_queries=lambda: open_digest_queries(session_factory), prices=Prices(), timezone=tz,
        budgets=lambda: dict(budgets or {}), history=kept, claims=DigestRuns(session_factory),
        publisher=slack_publisher(client, CHANNEL, sleep=sleep), draw_chart=draw_chart, **more,  # type: ignore[arg-type]
    )


def build_digest_data(session_factory, prices: Prices, budgets: dict[str, float], tz: str, day: date, now: datetime,
                      *, kept: SpendDays | None = None) -> DigestData:
    return service(session_factory, budgets=budgets, tz=tz, kept=kept).build_digest_data(day, now)


def runner(store: Store, api: FakeSlackApi, **overrides: object) -> Callable[..., list[date]]:
    """A digest runner as one replica would be: its own engine on the shared database."""
    engine = make_engine(store.url) if overrides.pop("own_engine", False) else store.engine
    sleeps: list[float] = []
    factory = make_session_factory(engine)
    client = WebClient(token=api.bot_token, base_url=api.base_url)
    options: dict[str, object] = {"budgets": {"vision": 1000.0}, "now": NOW, "replica": "replica-1",
                                  "sleep": sleeps.append, **overrides}

    def run(**more: object) -> list[date]:
        chosen = {**options, **more}
        now = chosen.pop("now")
        return service(factory, client, **chosen).post_due(now)  # type: ignore[arg-type]

    run.sleeps = sleeps  # type: ignore[attr-defined]
    return run


def parents(api: FakeSlackApi) -> list:
    return [m for m in api.messages(CHANNEL) if m.thread_ts is None]


def test_the_digest_posts_a_parent_its_replies_and_a_chart(sqlite_store: Store, slack_api: FakeSlackApi) -> None:
    seed(sqlite_store)
    run = runner(sqlite_store, slack_api)
    assert run() == [DAY]
    [parent] = parents(slack_api)
    assert "Sat 21 Nov 2026" in parent.text and "*$88.00*" in parent.text
    assert "▲ 780% vs the day before" in parent.text  # $88 against $10
    replies = [m for m in slack_api.messages(CHANNEL, thread_ts=parent.ts) if not m.files]
    assert len(replies) == 5
    assert "• *vision*: $60.00 · 24.0 GPU-h · month to date $60.00 of $1,000.00 (6%)" in replies[0].text
    assert "1. <@U0ALICE>: $60.00" in replies[1].text and "2. bob: $28.00" in replies[1].text
    assert "2 succeeded · 0 failed" in replies[3].text
    [chart] = slack_api.uploaded_files()
    assert chart.thread_ts == parent.ts and chart.channel_id == CHANNEL
    assert chart.content is not None and chart.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert chart.filename == "spend-2026-11-21.png"
    assert run.sleeps == [1.0] * 6  # type: ignore[attr-defined]  # paced: never two posts within a second
    assert DigestRuns(make_session_factory(sqlite_store.engine)).posted("2026-11-21") == (CHANNEL, parent.ts)


def test_two_replicas_at_once_post_one_digest(sql_store: Store, slack_api: FakeSlackApi) -> None:
    seed(sql_store)
    runs = [runner(sql_store, slack_api, replica=f"replica-{n}", own_engine=True) for n in (1, 2)]
    start = threading.Barrier(2)
    results: list[list[date]] = []

    def go(run: Callable[..., list[date]]) -> None:
        start.wait()
        results.append(run())

    threads = [threading.Thread(target=go, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [[], [DAY]]
    assert len(parents(slack_api)) == 1
    assert len(slack_api.uploaded_files()) == 1


def test_a_restart_on_the_same_day_posts_nothing(sqlite_store: Store, slack_api: FakeSlackApi) -> None:
    seed(sqlite_store)
    assert runner(sqlite_store, slack_api)() == [DAY]
    restarted = runner(sqlite_store, slack_api, own_engine=True, replica="replica-1-restarted")
    assert restarted(now=NOW + timedelta(hours=3)) == []
    assert restarted(now=NOW + timedelta(hours=13, minutes=59)) == []  # still the 22nd
    assert len(parents(slack_api)) == 1


def test_after_three_days_down_only_the_latest_missed_day_is_posted(
    sqlite_store: Store, slack_api: FakeSlackApi
) -> None:
    seed(sqlite_store)
    assert runner(sqlite_store, slack_api)() == [DAY]
    back = NOW + timedelta(days=4)  # down on the 23rd, 24th and 25th; back on the 26th
    assert runner(sqlite_store, slack_api, own_engine=True)(now=back) == [date(2026, 11, 25)]
    assert [("Wed 25 Nov 2026" in p.text) for p in parents(slack_api)] == [False, True]
    assert runner(sqlite_store, slack_api)(now=back + timedelta(hours=1)) == []
    assert len(parents(slack_api)) == 2


def test_catch_up_all_posts_every_missed_day(sqlite_store: Store, slack_api: FakeSlackApi) -> None:
    seed(sqlite_store)
    run = runner(sqlite_store, slack_api)
    assert run() == [DAY]
    assert run(now=NOW + timedelta(days=3), catch_up_all=True) == [date(2026, 11, 22), date(2026, 11, 23),
                                                                  date(2026, 11, 24)]
    assert len(parents(slack_api)) == 4


def test_a_claim_left_by_a_dead_replica_is_taken_over_once_stale(
    sqlite_store: Store, slack_api: FakeSlackApi
) -> None:
    seed(sqlite_store)
    digest_runs = DigestRuns(make_session_factory(sqlite_store.engine))
    assert digest_runs.claim("2026-11-21", "dead-replica", NOW - timedelta(minutes=10))
    run = runner(sqlite_store, slack_api)
    assert run() == []  # a live replica may still be posting it
    assert run(now=NOW + timedelta(minutes=25)) == [DAY]  # 35 minutes old: its replica died
    assert len(parents(slack_api)) == 1
    assert not digest_runs.claim("2026-11-21", "late", NOW + timedelta(days=1))  # posted: never again


def test_slack_failing_leaves_the_day_unposted(sqlite_store: Store, slack_api: FakeSlackApi) -> None:
    seed(sqlite_store)
    slack_api.fail("chat.postMessage", times=10, status=500)
    with pytest.raises(SlackApiError):
        runner(sqlite_store, slack_api)()
    assert DigestRuns(make_session_factory(sqlite_store.engine)).last_posted_day() is None


def test_build_digest_data_in_a_time_zone(sqlite_store: Store) -> None:
    seed(sqlite_store)
    factory = make_session_factory(sqlite_store.engine)
    # In Tokyo (UTC+9) Sat 21 Nov runs from 15:00 UTC on the 20th to 15:00 UTC on the 21st.
    data = build_digest_data(factory, Prices(), {"speech": 50.0}, "Asia/Tokyo", DAY, NOW)
    assert data.yesterday_total == pytest.approx(60.0 + 30.0)  # a and b entirely; c runs on the 22nd there
    assert data.day_before_total == 0.0
    assert {m.project: (m.spent, m.budget) for m in data.month_to_date} == {
        "nlp": (pytest.approx(30.0), None), "vision": (pytest.approx(60.0), None), "speech": (0.0, 50.0),
    }
    assert list(data.chart_series) == ["nlp", "vision"]
    assert len(data.chart_series["nlp"]) == 14 and data.chart_series["nlp"][-1] == (DAY, pytest.approx(30.0))
    assert [(u.key, u.cost) for u in data.top_users] == [("U0ALICE", pytest.approx(60.0)), ("bob", pytest.approx(30.0))]


def test_closed_days_are_kept_and_read_back(sql_store: Store) -> None:
    seed(sql_store)
    assert sql_store.engine is not None
    factory = make_session_factory(sql_store.engine)
    kept = SpendDays(factory)
    live = build_digest_data(factory, Prices(), {}, "UTC", DAY, NOW)
    first = build_digest_data(factory, Prices(), {}, "UTC", DAY, NOW, kept=kept)
    assert first == live
    stored = kept.get("UTC", date(2026, 11, 1), date(2026, 11, 30))
    assert set(stored) == {date(2026, 11, 1) + timedelta(days=n) for n in range(21)}  # closed days only
    assert stored[DAY] == {"vision": pytest.approx(60.0), "nlp": pytest.approx(28.0)}
    assert stored[date(2026, 11, 20)] == {"nlp": pytest.approx(10.0)}
    # A kept day is read, not recomputed: plant a value and see it come back.
    with factory() as session:
        session.execute(sa.update(SPEND_DAY).where(SPEND_DAY.c.day == "2026-11-19").values(costs={"x": 5.0}))
        session.commit()
    again = build_digest_data(factory, Prices(), {}, "UTC", DAY, NOW, kept=kept)
    assert dict((m.project, m.spent) for m in again.month_to_date)["x"] == 5.0
    # Today is not over: it is computed, never kept.
    build_digest_data(factory, Prices(), {}, "UTC", date(2026, 11, 22), NOW, kept=kept)
    assert date(2026, 11, 22) not in kept.get("UTC", date(2026, 11, 22), date(2026, 11, 22))
    kept.put("UTC", {DAY: {"other": 1.0}}, NOW)  # already kept: left as it is
    assert kept.get("UTC", DAY, DAY)[DAY] == {"vision": pytest.approx(60.0), "nlp": pytest.approx(28.0)}


def test_a_chosen_day_is_published_once(sqlite_store: Store, slack_api: FakeSlackApi) -> None:
    seed(sqlite_store)
    digest = service(make_session_factory(sqlite_store.engine),
                     WebClient(token=slack_api.bot_token, base_url=slack_api.base_url), replica="cli")
    where = digest.publish(date(2026, 11, 20), NOW)
    assert where is not None and where[0] == CHANNEL
    assert digest.publish(date(2026, 11, 20), NOW) is None
    [parent] = parents(slack_api)
    assert "Fri 20 Nov 2026" in parent.text and "*$10.00*" in parent.text


def test_infrastructure_failures_by_cause_and_sick_nodes_reach_the_digest(sql_store: Store) -> None:
    from core.digest import compose_digest
    from core.model import FailureClass
    from core.node_health import AUDIT_NODE
    from tests.integration.conftest import new_experiment

    seed(sql_store)
    exp = new_experiment("xid", created=h(21, 1))
    exp.start_attempt(None, h(21, 1))
    exp.mark_running(h(21, 1), node="gpu-a100-3")
    exp.end_attempt(1, "hardware fault (Xid 79: GPU has fallen off the bus)", FailureClass.HARDWARE, h(21, 3))
    exp.schedule_restart(h(21, 3), "infra", "hardware", None, h(21, 3))
    exp.start_attempt(None, h(21, 3))
    exp.mark_running(h(21, 3), node="gpu-b")
    exp.end_attempt(None, "Evicted", FailureClass.INFRA, h(20, 23) + timedelta(hours=7))
    sql_store.save(exp)
    with sql_store.new_uow() as uow:
        uow.audit.record(at=h(21, 5), actor="expbot", action=AUDIT_NODE, experiment_id=exp.id, detail={
            "node": "gpu-a100-3", "experiments": 3, "faults": 4, "window_hours": 24,
            "last_reason": "hardware fault (Xid 79: GPU has fallen off the bus)"})
        uow.audit.record(at=h(22, 5), actor="expbot", action=AUDIT_NODE, experiment_id=exp.id, detail={
            "node": "gpu-later", "experiments": 3, "faults": 3, "window_hours": 24, "last_reason": "next day"})
        uow.commit()
    data = build_digest_data(make_session_factory(sql_store.engine), Prices(), {}, "UTC", DAY, NOW)
    assert data.infra_failures == {"hardware": 1, "infra": 1}
    assert [(r.node, r.experiments, r.faults) for r in data.node_reports] == [("gpu-a100-3", 3, 4)]
    replies = compose_digest(data, Prices()).replies
    assert any("Infrastructure failures: 1 hardware · 1 preempted or lost" in r for r in replies)
    [nodes] = [r for r in replies if r.startswith("*Node health*")]
    assert "`gpu-a100-3`: 4 hardware or network failures of 3 experiments in 1d, last: hardware fault (Xid 79" in nodes
