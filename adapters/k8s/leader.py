"""Leader election on a coordination.k8s.io/v1 Lease: only the holder supervises and schedules.

Why not `kubernetes.leaderelection` (client 37)? It has real defects for a long-running server:
- no way to stop: `acquire()` loops forever and `run()` returns once leadership is lost, never
  campaigning again; there is no release on shutdown (a clean stop costs a full lease duration);
- `LeaseLock` builds `CoordinationV1Api()` on the global default configuration (no ApiClient
  injection: no per-test cluster, no impersonation) and never sets `leaseTransitions`;
- times are naive local datetimes round-tripped through `str()`, deadlines use `time.time()`
  (jumps with NTP), and no clock can be injected, so it cannot be tested deterministically;
- HTTP calls have no timeout and urllib3 retries them, so a leader cut off from the API server
  can block far past its renew deadline while a follower takes over: two leaders;
- `onstarted_leading` runs in its own thread and `onstopped_leading` may run while it still does;
  config errors call `sys.exit`.

So this is a small elector with client-go's semantics. A follower judges expiry by its OWN
monotonic clock: a lease is expired when its record has not changed for leaseDurationSeconds since
this replica first saw that record (client-go's observedTime; tolerant of clock skew between
replicas, which renewTime + leaseDurationSeconds < now is not). Empty holderIdentity means free;
a lease already naming us is ours at once (a container restarted in the same pod). Writes are replace() with the read resourceVersion, so
a 409 means someone else won. The leader renews every retry_period and steps down when no renewal
started within renew_deadline has succeeded; every request's timeout is cut to that deadline and
retries are off, so it stops acting before any follower can take over (lease_duration - renew_deadline
is the margin). acquireTime/renewTime are timezone-aware UTC MicroTimes.

An elector that has stopped leading (stepped down, or stopping) never campaigns again: the lease
may still name it, and "ours at once" would make it leader again while its process winds down.
Its run() ends and releases the lease if it still names it; a fresh process (a fresh elector)
follows. A stopping elector takes nothing, not even a free lease.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Protocol

from adapters.k8s.errors import KubeConflict, KubeError, KubeNotFound
# Re-exported: the elector's callers and tests name the record and the store through this module.
from adapters.k8s.lease_store import KubeLeaseStore, LeaseRecord, LeaseStore, wire_time

__all__ = ["ElectionClock", "KubeLeaseStore", "LeaseElector", "LeaseRecord", "LeaseStore",
           "SystemElectionClock", "wire_time"]

log = logging.getLogger(__name__)

Callback = Callable[[], None]
_RELEASE_BUDGET = 2.0  # seconds for the release on a clean stop, both calls together


class ElectionClock(Protocol):
    def now(self) -> datetime:
        """Wall time, timezone-aware UTC: written into acquireTime/renewTime."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: deadlines and expiry."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep until the event is set or the seconds pass; True when the event is set."""
        ...


class SystemElectionClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0))


# --- the elector ------------------------------------------------------------------------------
class LeaseElector:
    """Campaigns for one Lease until stopped; calls back when this replica starts/stops leading.

    Callbacks run on the thread that calls run() (or step()/resign()), one at a time, strictly
    alternating started, stopped, started...; they must return quickly (start or stop the leader's
    work, do not do it), since the lease is not renewed while they run.
    """

    def __init__(self, api_client: Any, *, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: ElectionClock | None = None, lease_store: LeaseStore | None = None) -> None:
        if not identity:
            raise ValueError("a leader election identity must not be empty")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration, got "
                             f"{retry_period}, {renew_deadline}, {lease_duration}")
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        if clock is not None and not all(callable(getattr(clock, m, None)) for m in ("now", "monotonic", "wait")):
            raise TypeError("clock must be an ElectionClock: now(), monotonic() and wait(event, seconds)")
        self._clock = clock or SystemElectionClock()
        if lease_store is None and api_client is None:
            raise ValueError("LeaseElector needs an api_client (or a lease_store)")
        self._store = lease_store if lease_store is not None else KubeLeaseStore(api_client, namespace, name)
        self._leading = False
        self._renewed_at = 0.0  # monotonic start of the last round whose write succeeded
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # monotonic time the observed record was first seen
        self._killed = threading.Event()
        self._retired = False  # stopped leading once: never campaigns again
        self._stopping: threading.Event | None = None  # run()'s stop, checked before every write

    @property
    def is_leader(self) -> bool:
        """True between on_started_leading and on_stopped_leading."""
        return self._leading

    @property
    def holder(self) -> str:
        """The holder in the lease as last seen ("" when free or not yet read)."""
        return self._observed.holder if self._observed else ""

    @property
    def retired(self) -> bool:
        """True once this replica stopped leading: it never campaigns again (a new elector must)."""
        return self._retired

    def run(self, stop: threading.Event, on_started_leading: Callback, on_stopped_leading: Callback) -> None:
        """Campaign until stop is set or this replica stops leading; then release the lease if it names us."""
        self._killed.clear()
        self._stopping = stop
        try:
            while not (stop.is_set() or self._killed.is_set() or self._retired):
                delay = self.step(on_started_leading, on_stopped_leading)
                if self._killed.is_set() or self._retired or self._clock.wait(stop, delay):
                    break
        finally:
            if not self._killed.is_set():
                self.resign(on_stopped_leading)

    def kill(self) -> None:
        """Test hook, as SIGKILL: run() returns at its next wake-up with no callback and no release."""
        self._killed.set()

    def step(self, on_started_leading: Callback, on_stopped_leading: Callback) -> float:
        """One round of run(): acquire or renew, call back on a transition; seconds to the next round."""
        if self._retired:
            return self.retry_period  # it stopped leading once: the lease may still name it, it is not ours
        started = self._clock.monotonic()
        won = self._try_acquire_or_renew()
        if won:
            self._renewed_at = started
            if not self._leading:
                self._start(on_started_leading, on_stopped_leading)
            return self.retry_period
        if self._leading:
            lost_to = self._observed.holder if self._observed else self.identity
            remaining = self._renewed_at + self.renew_deadline - self._clock.monotonic()
            if lost_to != self.identity:
                self._stop(on_stopped_leading, f"the lease is now held by {lost_to or 'nobody'}")
            elif remaining <= 0:
                self._stop(on_stopped_leading, f"no renewal succeeded within {self.renew_deadline}s")
            else:
                return min(self.retry_period, remaining)  # wake at the deadline at the latest
        return self.retry_period

    def resign(self, on_stopped_leading: Callback) -> None:
        """Stop leading (callback first), then hand the lease over at once if it still names us."""
        if self._leading:
            self._stop(on_stopped_leading, "stopping")
        self._retired = True
        # Both calls within one short budget: a shutdown must not wait long on a sick API server
        # (then the lease simply expires).
        deadline = self._clock.monotonic() + min(self.renew_deadline, _RELEASE_BUDGET)
        try:
            record = self._store.get(deadline - self._clock.monotonic())
            if record is None or record.holder != self.identity:
                return
            now = self._clock.now()
            released = replace(record, holder="", lease_duration_seconds=1, acquire_time=now, renew_time=now)
            self._observed = self._store.replace(released, max(deadline - self._clock.monotonic(), 0.001))
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        except KubeError as e:
            log.warning("%s could not release lease %s/%s (it will expire): %s", self.identity,
                        self.namespace, self.name, e)

    # --- internals ----------------------------------------------------------------------------
    def _timeout(self) -> float:
        """A leader's calls must end by its renew deadline; a follower's are merely bounded."""
        if not self._leading:
            return self.renew_deadline
        remaining = self._renewed_at + self.renew_deadline - self._clock.monotonic()
        if remaining <= 0:
            raise KubeError("the renew deadline passed")
        return remaining

    def _observe(self, record: LeaseRecord) -> None:
        if self._observed is None or record.spec_key() != self._observed.spec_key():
            self._observed_at = self._clock.monotonic()
            if self._observed is not None and record.holder != self._observed.holder:
                log.info("lease %s/%s: holder is now %r", self.namespace, self.name, record.holder)
        self._observed = record

    def _try_acquire_or_renew(self) -> bool:
        now = self._clock.now()
        try:
            record = self._store.get(self._timeout())
            if not self._leading and self._stopping is not None and self._stopping.is_set():
                return False  # stop came while we asked: a stopping replica takes nothing
            if record is None:
                fresh = LeaseRecord(self.identity, math.ceil(self.lease_duration), now, now, 0)
                self._observe(self._store.create(fresh, self._timeout()))
                return True
            self._observe(record)
            ours = record.holder == self.identity
            if record.holder and not ours:
                duration = record.lease_duration_seconds or self.lease_duration
                if self._clock.monotonic() < self._observed_at + duration:
                    return False  # held by someone else and not expired
            if self._leading and not ours:
                return False  # it was taken or cleared under us: step() steps down first
            wanted = replace(
                record, holder=self.identity, lease_duration_seconds=math.ceil(self.lease_duration),
                acquire_time=record.acquire_time if ours and record.acquire_time else now, renew_time=now,
                transitions=record.transitions if ours else record.transitions + 1,
            )
            self._observe(self._store.replace(wanted, self._timeout()))
            return True
        except (KubeConflict, KubeNotFound) as e:  # someone else wrote first: not an error
            log.debug("%s lost a race for lease %s/%s: %s", self.identity, self.namespace, self.name, e)
        except KubeError as e:
            log.warning("%s could not acquire/renew lease %s/%s: %s", self.identity, self.namespace, self.name, e)
        return False

    def _start(self, on_started_leading: Callback, on_stopped_leading: Callback) -> None:
        log.info("%s started leading (lease %s/%s)", self.identity, self.namespace, self.name)
        self._leading = True
        try:
            on_started_leading()
        except Exception:
            # Whatever half-started must be stopped, and the lease freed for another replica.
            log.exception("on_started_leading failed: stepping down")
            self.resign(on_stopped_leading)

    def _stop(self, on_stopped_leading: Callback, why: str) -> None:
        level = logging.INFO if why == "stopping" else logging.WARNING
        log.log(level, "%s stopped leading (lease %s/%s): %s", self.identity, self.namespace, self.name, why)
        self._leading = False
        self._retired = True
        try:
            on_stopped_leading()
        except Exception:
            log.exception("on_stopped_leading failed")

    def close(self) -> None:
        """Close the private API client (nothing to do with an injected store)."""
        close = getattr(self._store, "close", None)
        if close is not None:
            close()
