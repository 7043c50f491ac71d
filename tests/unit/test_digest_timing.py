"""When a digest goes out: at its minute in its time zone, never for days before expbot's first launch, no empty chart."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from bot.timed_jobs import digest_trigger
from core.cost import Prices
from core.digest_service import DigestService
from tests.fakes.digest_queries import FakeDigestQueries
from tests.fakes.store import FakeDatabase, FakeUnitOfWork
from tests.integration.cost_fixtures import ran

DAY = date(2026, 11, 21)
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)  # after the 09:00 digest of the 21st is due


class Claims:
    def __init__(self, last: str | None = None) -> None:
        self.last, self.claimed = last, []

    def claim(self, day: str, by: str, at: datetime) -> bool:
        self.claimed.append(day)
        return True

    def mark_posted(self, day: str, channel: str, ts: str, at: datetime) -> None:
        self.last = day

    def last_posted_day(self) -> str | None:
        return self.last


def service(db: FakeDatabase, claims: Claims, first_launch: datetime | None, charts: list | None = None) -> DigestService:
    @contextmanager
    def open_queries():  # type: ignore[no-untyped-def]
        yield FakeDigestQueries(db)

    return DigestService(
        open_queries=open_queries, prices=Prices(), timezone="UTC", claims=claims,
        publisher=lambda digest, chart, chart_name: ("C1", "1.0"), post_at=time(9, 0),
        began=lambda: first_launch,
        draw_chart=(lambda series, title, currency: charts.append(series) or b"png") if charts is not None else None,
    )


def spent_on(day: date) -> FakeDatabase:
    db = FakeDatabase()
    start = datetime(day.year, day.month, day.day, 2, tzinfo=timezone.utc)
    with FakeUnitOfWork(db) as uow:
        uow.experiments.add(ran("a", [(start, start + timedelta(hours=6), 10.0)], project="vision", gpus=4))
        uow.commit()
    return db


def test_a_fresh_install_posts_no_digest_of_a_day_before_its_first_launch() -> None:
    today = NOW - timedelta(hours=1)  # installed and first used this morning
    assert service(FakeDatabase(), claims := Claims(), today).post_due(NOW) == [] and claims.claimed == []
    assert service(FakeDatabase(), Claims(), None).post_due(NOW) == []  # nothing launched ever
    assert service(spent_on(DAY), Claims(), datetime(2026, 11, 21, 8, tzinfo=timezone.utc)).post_due(NOW) == [DAY]


def test_a_missed_digest_is_caught_up_only_after_one_was_posted() -> None:
    long_ago = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert service(spent_on(DAY), Claims(), long_ago).post_due(NOW, missed_only=True) == []
    assert service(spent_on(DAY), Claims("2026-11-19"), long_ago).post_due(NOW, missed_only=True) == [DAY]


def test_no_chart_when_nothing_was_spent_in_its_days() -> None:
    charts: list = []
    idle = service(FakeDatabase(), Claims(), None, charts)
    assert idle.chart(idle.build_digest_data(DAY, NOW)) is None and charts == []
    busy = service(spent_on(DAY), Claims(), None, charts)
    assert busy.chart(busy.build_digest_data(DAY, NOW)) == b"png" and len(charts) == 1


def test_the_digest_fires_at_its_minute_in_its_time_zone() -> None:
    trigger = digest_trigger(time(9, 30), "Asia/Kolkata")  # UTC+5:30: 04:00 UTC
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc))
    assert fire == datetime(2026, 11, 22, 9, 30, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert fire.astimezone(timezone.utc) == datetime(2026, 11, 22, 4, 0, tzinfo=timezone.utc)


def test_a_budget_alert_names_a_user_as_a_mention_and_a_project_in_bold() -> None:
    from core.budget_alerts import BudgetAlert

    user = BudgetAlert("user", "U012ABCDEF", "2026-11", 80, 400.0, 500.0).text(Prices())
    assert "user <@U012ABCDEF> has spent $400.00 of its $500.00" in user
    project = BudgetAlert("project", "a<b", "2026-11", 100, 5.0, 5.0).text(Prices())
    assert "project *a&lt;b* has spent" in project
