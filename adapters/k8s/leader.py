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
a lease already naming us is ours at once. Writes are replace() with the read resourceVersion, so
a 409 means someone else won. The leader renews every retry_period and steps down when no renewal
started within renew_deadline has succeeded; every request's timeout is cut to that deadline and
retries are off, so it stops acting before any follower can take over (lease_duration - renew_deadline
is the margin). acquireTime/renewTime are timezone-aware UTC MicroTimes.
"""
from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from adapters.k8s.errors import KubeConflict, KubeError, KubeNotFound, translate

log = logging.getLogger(__name__)

Callback = Callable[[], None]


# --- the Lease as the elector sees it ---------------------------------------------------------
@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec plus the resourceVersion it was read at (None: not yet stored)."""

    holder: str  # "" when nobody holds it
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int = 0
    resource_version: str | None = None

    def spec_key(self) -> tuple[Any, ...]:
        """What a change of leadership or a renewal changes (resourceVersion aside)."""
        return (self.holder, self.lease_duration_seconds, self.acquire_time, self.renew_time, self.transitions)


class LeaseStore(Protocol):
    """The three Lease calls the elector makes, bound to one namespace and name.

    Errors are adapters.k8s.errors': KubeConflict when the Lease exists already or changed since it
    was read (resourceVersion), KubeNotFound when it vanished, any other KubeError otherwise.
    """

    def get(self, timeout: float) -> LeaseRecord | None: ...
    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord: ...
    def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord: ...


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


# --- the real store ---------------------------------------------------------------------------
def wire_time(value: datetime) -> datetime:
    """The instant to send as a MicroTime: UTC, never on a whole second.

    Client 37 turns the body into a pydantic V1Lease and writes datetimes with isoformat(), which
    drops the fraction at .000000; the API server parses MicroTime as RFC3339 with exactly six
    fractional digits and rejects that (400). Such an instant is sent 1 µs later.
    """
    value = value.astimezone(timezone.utc)
    return value.replace(microsecond=1) if value.microsecond == 0 else value


class KubeLeaseStore:
    """CoordinationV1Api on a private copy of the caller's ApiClient with urllib3 retries off."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        config = copy.deepcopy(api_client.configuration)
        config.retries = False  # a retried call could outlive the renew deadline
        self._client = client.ApiClient(configuration=config)
        self._client.default_headers.update(api_client.default_headers)  # User-Agent, Impersonate-User...
        self._api = client.CoordinationV1Api(self._client)
        self.namespace, self.name = namespace, name
        self._metadata: dict[str, Any] = {}  # labels/annotations of the last read, kept on replace

    def get(self, timeout: float) -> LeaseRecord | None:
        try:
            lease = self._call(self._api.read_namespaced_lease, self.name, self.namespace, timeout=timeout)
        except KubeNotFound:
            return None  # there is no lease yet
        meta = lease.metadata
        self._metadata = {"labels": meta.labels, "annotations": meta.annotations}
        return self._record(lease)

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        try:  # 409 (KubeConflict): someone created it first
            lease = self._call(self._api.create_namespaced_lease, self.namespace, self._body(record), timeout=timeout)
        except KubeNotFound as e:  # the namespace is missing: not a race
            raise KubeError(f"cannot create lease {self.namespace}/{self.name}: {e}", e.status) from e
        return self._record(lease)

    def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        body = self._body(record)
        lease = self._call(self._api.replace_namespaced_lease, self.name, self.namespace, body, timeout=timeout)
        return self._record(lease)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: Callable[..., Any], *args: Any, timeout: float) -> Any:
        try:
            return method(*args, _request_timeout=max(timeout, 0.001))
        except (ApiException, HTTPError, OSError) as e:
            raise translate(e) from e

    def _body(self, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version is not None:
            metadata["resourceVersion"] = record.resource_version
            metadata.update({k: v for k, v in self._metadata.items() if v})
        spec: dict[str, Any] = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.lease_duration_seconds,
            "leaseTransitions": record.transitions,
        }
        if record.acquire_time is not None:
            spec["acquireTime"] = wire_time(record.acquire_time)
        if record.renew_time is not None:
            spec["renewTime"] = wire_time(record.renew_time)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    @staticmethod
    def _record(lease: Any) -> LeaseRecord:
        spec = lease.spec

        def utc(value: datetime | None) -> datetime | None:
            return value.astimezone(timezone.utc) if value is not None else None

        return LeaseRecord(
            holder=(spec.holder_identity or "") if spec else "",
            lease_duration_seconds=(spec.lease_duration_seconds or 0) if spec else 0,
            acquire_time=utc(spec.acquire_time) if spec else None,
            renew_time=utc(spec.renew_time) if spec else None,
            transitions=(spec.lease_transitions or 0) if spec else 0,
            resource_version=lease.metadata.resource_version,
        )


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

    @property
    def is_leader(self) -> bool:
        """True between on_started_leading and on_stopped_leading."""
        return self._leading

    @property
    def holder(self) -> str:
        """The holder in the lease as last seen ("" when free or not yet read)."""
        return self._observed.holder if self._observed else ""

    def run(self, stop: threading.Event, on_started_leading: Callback, on_stopped_leading: Callback) -> None:
        """Blocks until stop is set, then stops leading and releases the lease if held."""
        self._killed.clear()
        try:
            while not stop.is_set() and not self._killed.is_set():
                delay = self.step(on_started_leading, on_stopped_leading)
                if self._killed.is_set() or self._clock.wait(stop, delay):
                    break
        finally:
            if not self._killed.is_set():
                self.resign(on_stopped_leading)

    def kill(self) -> None:
        """Test hook, as SIGKILL: run() returns at its next wake-up with no callback and no release."""
        self._killed.set()

    def step(self, on_started_leading: Callback, on_stopped_leading: Callback) -> float:
        """One round of run(): acquire or renew, call back on a transition; seconds to the next round."""
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
        timeout = min(self.renew_deadline, 5.0)
        try:
            record = self._store.get(timeout)
            if record is None or record.holder != self.identity:
                return
            now = self._clock.now()
            released = replace(record, holder="", lease_duration_seconds=1, acquire_time=now, renew_time=now)
            self._observed = self._store.replace(released, timeout)
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
        try:
            on_stopped_leading()
        except Exception:
            log.exception("on_stopped_leading failed")

    def close(self) -> None:
        """Close the private API client (nothing to do with an injected store)."""
        close = getattr(self._store, "close", None)
        if close is not None:
            close()
