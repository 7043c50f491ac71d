"""serve's relay loop: delivers when woken (not at the next tick), wakes the supervisor for launches, drains on stop."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from bot.serve import _relay
from core.events import ExperimentLaunched, ExperimentQueued, LaunchApproved
from tests.fakes.clock import FakeClock
from tests.fakes.store import FakeDatabase, FakeUnitOfWork
from tests.polling import wait_for
from tests.unit.test_relay import Recorder


class WakeLog:
    def __init__(self) -> None:
        self.woken: list[str] = []

    def wake(self, experiment_id: str) -> None:
        self.woken.append(experiment_id)


def relay_running(db: FakeDatabase, notifier: Recorder, supervisor: WakeLog):
    bot = SimpleNamespace(
        uow_factory=lambda: FakeUnitOfWork(db), notifier=notifier, clock=FakeClock(), supervisor=supervisor,
        settings=SimpleNamespace(relay_interval_seconds=600.0),  # only a wake can explain a prompt delivery
    )
    stop, woken = threading.Event(), threading.Event()
    thread = threading.Thread(target=_relay, args=(bot, stop, woken), daemon=True)
    thread.start()
    return stop, woken, thread


def launched(name: str) -> ExperimentLaunched:
    return ExperimentLaunched(experiment_id=name, experiment_name=name, owner="ana", project="nlp", gpus=1, gpu_type=None)


def test_a_wake_delivers_at_once_and_launches_wake_the_supervisor():
    db, notifier, supervisor = FakeDatabase(), Recorder(), WakeLog()
    db.events.append(launched("first"))
    stop, woken, thread = relay_running(db, notifier, supervisor)
    try:
        wait_for(lambda: notifier.seen == ["first"], 5, "the first round")
        db.events.extend([launched("a"), ExperimentQueued(experiment_id="b", experiment_name="b", reason="full"),
                          LaunchApproved(experiment_id="c", experiment_name="c", by="boss")])
        woken.set()
        wait_for(lambda: notifier.seen == ["first", "a", "b", "c"], 5, "delivery on the wake, long before the 600 s tick")
        assert supervisor.woken == ["first", "a", "c"]  # launched and approved: both must start now
    finally:
        stop.set()
        woken.set()
        thread.join(5)
    assert not thread.is_alive()


def test_stop_delivers_a_last_round_then_returns():
    db, notifier = FakeDatabase(), Recorder()
    db.events.append(launched("first"))
    stop, woken, thread = relay_running(db, notifier, WakeLog())
    wait_for(lambda: notifier.seen == ["first"], 5, "the first round")
    db.events.append(launched("final"))  # stored by the supervisor's last pass
    stop.set()
    woken.set()
    thread.join(5)
    assert not thread.is_alive() and notifier.seen == ["first", "final"]


def test_a_backlog_bigger_than_one_batch_is_drained_in_one_round():
    db, notifier = FakeDatabase(), Recorder()
    db.events.extend(launched(f"e{i}") for i in range(250))
    stop, woken, thread = relay_running(db, notifier, WakeLog())
    try:
        wait_for(lambda: len(notifier.seen) == 250, 5, "all 250, not 100 per 600 s tick")
    finally:
        stop.set()
        woken.set()
        thread.join(5)
