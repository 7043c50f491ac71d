"""The digest service on fakes, and the scheduler's commands through the bus."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

import pytest

from core import commands, scheduled
from core.bus import MessageBus
from core.budget import BudgetConfig
from core.cost import Prices
from core.digest_service import DigestService
from tests.fakes.clock import FakeClock
from tests.fakes.digest_queries import FakeDigestQueries
from tests.fakes.store import FakeDatabase, FakeUnitOfWork
from tests.integration.cost_fixtures import ran

DAY = date(2026, 11, 21)
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


def h(hour: float) -> datetime:
    return datetime(2026, 11, 21, tzinfo=timezone.utc) + timedelta(hours=hour)


class CountingQueries(FakeDigestQueries):
    """The fake digest queries, counting each call by name."""

    def __init__(self, db: FakeDatabase, calls: list[str]) -> None:
        super().__init__(db)
        self.calls = calls

    def spend_by(self, key, **window):  # type: ignore[no-untyped-def]
        self.calls.append(f"spend_by {key}")
        return super().spend_by(key, **window)


def seeded() -> FakeDatabase:
    db = FakeDatabase()
    with FakeUnitOfWork(db) as uow:
        # 4 GPUs for 6 h at $10/h: $60 over 24 GPU-hours, $2.50 per GPU-hour.
        uow.experiments.add(ran("a", [(h(2), h(8), 10.0)], project="vision", gpus=4, gpu_type="a100"))
        uow.commit()
    return db


def service(db: FakeDatabase, calls: list[str], **more: object) -> DigestService:
    @contextmanager
    def open_queries():  # type: ignore[no-untyped-def]
        yield CountingQueries(db, calls)

    return DigestService(open_queries=open_queries, prices=Prices(), timezone="UTC", **more)  # type: ignore[arg-type]


def test_idle_cost_is_priced_from_the_days_project_spend_read_once() -> None:
    calls: list[str] = []
    since: list[datetime] = []
    digest = service(seeded(), calls, idle_gpu_hours=lambda start: since.append(start) or 3.0)
    data = digest.build_digest_data(DAY, NOW)
    assert (data.idle_gpu_hours, data.idle_cost) == (3.0, pytest.approx(7.5))  # 3 GPU-h at $2.50
    assert since == [h(0)]
    assert calls.count("spend_by project") == 1 and calls.count("spend_by owner") == 1


def test_without_an_idle_source_or_anywhere_to_post() -> None:
    digest = service(seeded(), [], budgets=lambda: {"nlp": 10.0})
    data = digest.build_digest_data(DAY, NOW)
    assert (data.idle_gpu_hours, data.idle_cost) == (0.0, 0.0)
    assert {m.project: m.budget for m in data.month_to_date} == {"vision": None, "nlp": 10.0}
    assert not digest.can_post and digest.post_due(NOW) == []
    assert digest.chart(data) is None  # no chart drawer: the digest goes out without one


def test_a_broken_chart_costs_only_the_chart() -> None:
    def broken(*_: object) -> bytes:
        raise RuntimeError("no fonts")

    digest = service(seeded(), [], draw_chart=broken)
    assert digest.chart(digest.build_digest_data(DAY, NOW)) is None


def test_scheduled_commands_go_through_the_bus() -> None:
    db, clock = seeded(), FakeClock(NOW.replace(day=21, hour=12))
    posted: list[datetime] = []
    delivered = []

    class Digest:
        def post_due(self, now: datetime, missed_only: bool = False) -> list[date]:
            posted.append(now)
            return [DAY]

    budgets = BudgetConfig(projects={"vision": 100.0})
    bus = MessageBus(lambda: FakeUnitOfWork(db), {
        commands.PostDigest: functools.partial(scheduled.post_digest, digest=Digest(), clock=clock),
        commands.SendBudgetAlerts: functools.partial(scheduled.send_budget_alerts, config=budgets, clock=clock,
                                                     deliver=delivered.append),
    })
    assert bus.handle(commands.PostDigest()) == [DAY] and posted == [clock.now()]
    [alert] = bus.handle(commands.SendBudgetAlerts())  # $60 of $100: the 50% alert, handed to `deliver`
    assert alert.threshold == 50 and delivered == [alert]
    assert bus.handle(commands.SendBudgetAlerts()) == []  # each threshold once a month
