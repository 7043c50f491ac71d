"""The outbox relay: in order, at least once, stops at the first failure; observers see every pending event."""
from __future__ import annotations

from core.events import Event, ExperimentQueued
from core.relay import DeliveryRetry, deliver_pending
from tests.fakes.clock import FakeClock
from tests.fakes.store import FakeDatabase, FakeUnitOfWork


class Recorder:
    """A notifier that fails on the events named in `failing`."""

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.failing = set(failing)
        self.seen: list[str] = []

    def notify(self, event: Event) -> None:
        if event.experiment_name in self.failing:
            raise RuntimeError("Slack said no")
        self.seen.append(event.experiment_name)


def outbox_with(*names: str) -> FakeDatabase:
    db = FakeDatabase()
    db.events.extend(ExperimentQueued(experiment_id=n, experiment_name=n, reason="full") for n in names)
    return db


def test_delivers_in_order_and_marks_delivered_once():
    db = outbox_with("a", "b", "c")
    notifier = Recorder()
    assert deliver_pending(lambda: FakeUnitOfWork(db), notifier, FakeClock()) == 3
    assert notifier.seen == ["a", "b", "c"]
    assert deliver_pending(lambda: FakeUnitOfWork(db), notifier, FakeClock()) == 0
    assert notifier.seen == ["a", "b", "c"]


def test_stops_at_the_first_failure_and_retries_it_next_time():
    db = outbox_with("a", "b", "c")
    notifier = Recorder(failing={"b"})
    assert deliver_pending(lambda: FakeUnitOfWork(db), notifier, FakeClock()) == 1
    assert notifier.seen == ["a"]  # c waits behind b: order is kept
    notifier.failing.clear()
    assert deliver_pending(lambda: FakeUnitOfWork(db), notifier, FakeClock()) == 2
    assert notifier.seen == ["a", "b", "c"]


def test_observer_sees_every_pending_event_even_those_not_delivered():
    db = outbox_with("a", "b", "c")
    observed: list[str] = []
    deliver_pending(lambda: FakeUnitOfWork(db), Recorder(failing={"a"}), FakeClock(),
                    observe=lambda e: observed.append(e.experiment_id))
    assert observed == ["a", "b", "c"]


def test_a_failing_observer_does_not_stop_delivery():
    db = outbox_with("a", "b")
    notifier = Recorder()

    def broken(_event: Event) -> None:
        raise ValueError("observer bug")

    assert deliver_pending(lambda: FakeUnitOfWork(db), notifier, FakeClock(), observe=broken) == 2
    assert notifier.seen == ["a", "b"]


def test_a_failed_delivery_is_logged_naming_its_experiment(caplog):
    db = outbox_with("a", "b")
    deliver_pending(lambda: FakeUnitOfWork(db), Recorder(failing={"b"}), FakeClock())
    (record,) = [r for r in caplog.records if r.getMessage().startswith("delivering")]
    assert (record.experiment, record.experiment_id) == ("b", "b")  # the JSON log format's fields


def test_a_sick_database_under_the_notifier_is_one_line_and_retried(caplog):
    from core.errors import DatabaseUnavailable

    class SickThreads(Recorder):
        def notify(self, event: Event) -> None:
            raise DatabaseUnavailable("the database /d/expbot.db is read-only: attempt to write a readonly database")

    db = outbox_with("a")
    assert deliver_pending(lambda: FakeUnitOfWork(db), SickThreads(), FakeClock()) == 0
    [record] = caplog.records
    assert record.exc_info is None and "failed (1 in a row): the database /d/expbot.db is read-only" in record.getMessage()
    assert deliver_pending(lambda: FakeUnitOfWork(db), Recorder(), FakeClock()) == 1  # still pending, delivered now


def refusals(caplog) -> list:
    return [r for r in caplog.records if r.getMessage().startswith("delivering") and r.experiment == "a"]


def test_a_refused_event_is_retried_with_backoff_and_its_traceback_shown_once(caplog):
    db, clock, retry = outbox_with("a", "b"), FakeClock(), DeliveryRetry()
    notifier = Recorder(failing={"a"})
    tries, t0 = [], clock.now()
    for _ in range(40):  # 40 relay rounds, a second apart
        before = len(refusals(caplog))
        deliver_pending(lambda: FakeUnitOfWork(db), notifier, clock, retry=retry)
        if len(refusals(caplog)) > before:
            tries.append(round((clock.now() - t0).total_seconds()))
        clock.advance(seconds=1)
    assert tries == [0, 1, 3, 7, 15, 31]  # 1 s, 2 s, 4 s, ... apart: not every round
    lines = refusals(caplog)
    assert [r.exc_info is not None for r in lines] == [True] + [False] * 5  # the traceback once
    assert "(6 in a row)" in lines[-1].getMessage() and "next try in 32s" in lines[-1].getMessage()
    assert notifier.seen == []  # b waits behind a: order is kept
    notifier.failing.clear()
    clock.advance(seconds=40)
    assert deliver_pending(lambda: FakeUnitOfWork(db), notifier, clock, retry=retry) == 2
    assert notifier.seen == ["a", "b"]
    assert any(r.getMessage().endswith("after 6 failed tries") for r in caplog.records)
