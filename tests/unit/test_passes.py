"""The PassScheduler's inbox: its own wake-ups and the backend's changes, one wait, no backend woken from outside."""
from __future__ import annotations

import threading
import time

from core.passes import Inbox


def test_a_wake_ends_the_wait_at_once_and_names_the_experiment():
    inbox = Inbox()
    threading.Timer(0.1, inbox.wake, args=("exp-a",)).start()
    began = time.monotonic()
    assert inbox.wait(10) == {"exp-a"} and time.monotonic() - began < 5
    assert inbox.wait(0) == set()  # taken once


def test_an_unnamed_backend_change_means_every_experiment_but_a_bare_wake_does_not():
    inbox = Inbox()
    inbox.wake()
    assert inbox.wait(0) == set()
    inbox.put(None)
    inbox.put({"exp-b"})
    assert inbox.wait(0) is None


def test_the_pump_forwards_backend_changes_and_ends_soon_after_stop():
    inbox, stop, changes = Inbox(), threading.Event(), [{"exp-c"}]

    def backend_wait(timeout: float) -> set[str]:
        time.sleep(min(timeout, 0.05))
        return changes.pop() if changes else set()

    pump = threading.Thread(target=inbox.pump, args=(backend_wait, stop))
    pump.start()
    try:
        deadline = time.monotonic() + 5
        seen: set[str] = set()
        while "exp-c" not in seen and time.monotonic() < deadline:
            seen |= inbox.wait(1) or set()
        assert seen == {"exp-c"}
    finally:
        stop.set()
    pump.join(timeout=1)
    assert not pump.is_alive()


def test_a_failing_backend_wait_does_not_end_the_pump():
    inbox, stop, calls = Inbox(), threading.Event(), []

    def backend_wait(timeout: float) -> set[str]:
        calls.append(timeout)
        if len(calls) == 1:
            raise RuntimeError("api gone")
        return {"exp-d"}

    pump = threading.Thread(target=inbox.pump, args=(backend_wait, stop))
    pump.start()
    try:
        deadline = time.monotonic() + 5
        while inbox.wait(1) != {"exp-d"} and time.monotonic() < deadline:
            pass
        assert len(calls) >= 2
    finally:
        stop.set()
        pump.join(timeout=2)
