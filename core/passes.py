"""When the supervisor looks at what: full resyncs, restarts falling due, wake-ups and backend changes.

The PassScheduler decides when a pass runs and over which experiments; what a pass does to each
experiment is the Supervisor's and the Reconciler's. Its Inbox is the one thing its loop waits on:
the supervisor's own wake-ups (a launch, an approval, a stop carried out) go straight into it, and a
pump thread ("supervisor-changes") waits on the backend's changes and puts them in. The backend
never has to be woken by anyone but itself.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from core.failures import FailureLog
from core.ports import Clock

log = logging.getLogger(__name__)
_pass_log = logging.getLogger("core.supervisor")  # a failed pass is the supervisor's news, as it always was
# A failed pass is retried this soon, as a full pass, however long the resync interval.
_RETRY_FAILED_PASS = timedelta(seconds=2)
# How long the pump waits on the backend at a time: it sees `stop` this often when nothing closes the
# backend (the local runner), so serve's shutdown stays well under its 2 s.
_CHANGES_SLICE = 0.25
PUMP_THREAD = "supervisor-changes"


class Passes(Protocol):
    """What the scheduler runs: a full pass, a pass over some experiments, and its share of starts."""

    max_starts_per_pass: int

    def reconcile_once(self) -> object:
        """One pass over every active experiment."""
        ...

    def reconcile_ids(self, experiment_ids: set[str]) -> object:
        """One pass over just these experiments."""
        ...


class Inbox:
    """Experiments to look at now, from the supervisor's own wake-ups and from the backend; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ids: set[str] = set()
        self._everything = False  # a backend that cannot name its changes reported one
        self._news = False

    def wake(self, experiment_id: str | None = None) -> None:
        """End the current wait now, counting this experiment (if any) as changed."""
        self.put(None if experiment_id is None else {experiment_id}, unnamed=False)

    def put(self, changed: set[str] | None, unnamed: bool = True) -> None:
        """What a backend wait returned: the experiments that changed, or None (something did: look at all)."""
        with self._cond:
            if changed is None:
                self._everything = self._everything or unnamed
            else:
                self._ids |= changed
            self._news = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> set[str] | None:
        """Block until news or `timeout` seconds; the experiments named since the last wait, None for all."""
        with self._cond:
            self._cond.wait_for(lambda: self._news, max(timeout, 0.0))
            self._news = False
            ids, self._ids = self._ids, set()
            everything, self._everything = self._everything, False
        return None if everything else ids

    def take_named(self) -> set[str]:
        """Without waiting: the experiments named since the last look (a pass in progress acts on them first)."""
        with self._cond:
            ids, self._ids = self._ids, set()
        return ids

    def pump(self, backend_wait: Callable[[float], set[str] | None], stop: threading.Event) -> None:
        """Put every backend change into the inbox until `stop` (the body of the pump thread)."""
        failures = FailureLog(log, "waiting for backend changes")
        while not stop.is_set():
            try:
                changed = backend_wait(_CHANGES_SLICE)
            except Exception as e:  # a sick backend must not end supervision: the resync still runs
                failures.failed(e)
                stop.wait(_CHANGES_SLICE)
                continue
            failures.succeeded()
            # Every return counts as news, empty ones too: the loop then looks at its due times, which
            # a test's fake clock may have moved without any change.
            self.put(changed)
        self.wake()  # the loop sees `stop` at once


class PassScheduler:
    """Runs the supervisor's passes: full ones every resync interval, others over just what changed or fell due."""

    def __init__(self, backend_wait: Callable[[float], set[str] | None], clock: Clock) -> None:
        self.backend_wait = backend_wait
        self.clock = clock
        self.inbox = Inbox()
        self._due: dict[str, datetime] = {}  # experiment -> when to look again (restarts, deferred starts)
        self._failures = FailureLog(_pass_log, "supervisor pass")
        # When the loop last finished a pass, well or not: serve's /healthz fails when it stops (a wedged thread).
        self.last_pass_at: datetime | None = None

    def wake(self, experiment_id: str | None = None) -> None:
        """Thread-safe: look at this experiment now rather than at the next pass (None: just end the wait)."""
        self.inbox.wake(experiment_id)

    def changed_meanwhile(self) -> set[str]:
        """Experiments that changed while a pass runs (an attempt ended): the pass looks at them next."""
        return self.inbox.take_named()

    def note_due(self, experiment_id: str, due: datetime | None) -> None:
        """Look at the experiment again at `due` (None: not before something changes)."""
        if due is None:
            self._due.pop(experiment_id, None)
        else:
            self._due[experiment_id] = due

    def forget_due(self) -> None:
        """A full pass is under way: it notes afresh what falls due."""
        self._due = {}

    def run(self, passes: Passes, stop: threading.Event, resync_interval: float) -> None:
        """Run passes until `stop`: on every change or wake-up, when a restart is due, and periodically."""
        pump = threading.Thread(target=self.inbox.pump, args=(self.backend_wait, stop), name=PUMP_THREAD, daemon=True)
        pump.start()
        try:
            self._loop(passes, stop, resync_interval)
        finally:
            # Bounded: a pump still inside the backend's wait must not delay serve's shutdown.
            pump.join(timeout=2 * _CHANGES_SLICE)

    def _loop(self, passes: Passes, stop: threading.Event, resync_interval: float) -> None:
        next_full: datetime | None = None
        changed: set[str] | None = None
        resync = timedelta(seconds=resync_interval)
        while not stop.is_set():
            now = self.clock.now()
            try:
                if changed is None or next_full is None or now >= next_full:
                    next_full = now + resync  # first: a failing pass must not spin
                    passes.reconcile_once()
                elif ids := changed | self._take_due(now, passes.max_starts_per_pass):
                    passes.reconcile_ids(ids)
            except Exception as e:  # the loop must outlive any one bad pass (e.g. a sick database)
                self._failures.failed(e)
                # A failure may have cut the pass short: the whole pass is retried soon.
                next_full = min(next_full or now, now + min(resync, _RETRY_FAILED_PASS))
            else:
                self._failures.succeeded()
            self.last_pass_at = self.clock.now()
            wake = min([next_full, *self._due.values()])
            # At least 0.1s: a restart that is due but cannot fit yet must not make the loop spin.
            timeout = max(0.1, (wake - self.clock.now()).total_seconds())
            changed = self._with_pending(self.inbox.wait(min(timeout, resync_interval)))

    def _with_pending(self, changed: set[str] | None) -> set[str] | None:
        """Add what the backend holds but the pump has not fetched yet: changes made during one pass
        (a burst of submits) are looked at in one pass, not split by when the pump happened to wake."""
        if changed is None:
            return None  # a full pass follows anyway
        try:
            pending = self.backend_wait(0)
        except Exception:  # the pump reports a sick backend; the next wait tries again
            return changed
        return None if pending is None else changed | pending

    def _take_due(self, now: datetime, limit: int) -> set[str]:
        """The experiments due by now, the earliest first, at most `limit` (a pass's share of starts)."""
        ready = sorted((due, n, eid) for n, (eid, due) in enumerate(self._due.items()) if due <= now)
        taken = {eid for _due, _n, eid in ready[:limit]}
        for eid in taken:
            del self._due[eid]
        return taken
