"""LeaseElector contract: the same tests on in-memory Leases and on a real kube-apiserver.

Electors run their real loop on threads with short, real timings (leaseDurationSeconds is whole
seconds on the API, so the lease is 3 s). The `fake` variants need no cluster.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.k8s.errors import KubeConflict, KubeError
from adapters.k8s.leader import KubeLeaseStore, LeaseElector, LeaseRecord
from tests.fakes.leases import FakeLeaseServer, PartitionableStore
from tests.polling import wait_for

NAME = "expbot-leader"
TIMING = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
# Thread scheduling and API latency on a busy 2-core test machine running the whole control
# plane. Still below the lease duration, so a clean stop is proven to hand over before expiry.
SLACK = 1.5


@dataclass
class Leases:
    """Where the Leases live: a fake server or a namespace of the real control plane."""

    kind: str
    namespace: str
    new_store: Callable[[], Any]
    admin: Any = None  # kubernetes ApiClient (real only)


@pytest.fixture(params=["fake", "real"])
def leases(request: pytest.FixtureRequest) -> Iterator[Leases]:
    if request.param == "fake":
        server = FakeLeaseServer()
        yield Leases("fake", "fake-ns", lambda: server.store("fake-ns", NAME))
        return
    api = request.getfixturevalue("k8s_api")
    namespace = request.getfixturevalue("k8s_namespace")
    stores: list[KubeLeaseStore] = []

    def new_store() -> KubeLeaseStore:
        stores.append(KubeLeaseStore(api, namespace, NAME))
        return stores[-1]

    yield Leases("real", namespace, new_store, api)
    for store in stores:
        store.close()


@dataclass
class Candidate:
    """One replica: an elector running on its own thread, and when it started/stopped leading."""

    identity: str
    store: PartitionableStore
    elector: LeaseElector
    stop: threading.Event = field(default_factory=threading.Event)
    events: list[tuple[float, str]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> Candidate:
        self.thread = threading.Thread(target=self.elector.run, name=f"elector-{self.identity}", daemon=True,
                                       args=(self.stop, lambda: self._log("started"), lambda: self._log("stopped")))
        self.thread.start()
        return self

    def _log(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    def first(self, what: str) -> float:
        return next(t for t, w in self.events if w == what)

    def shutdown(self) -> None:
        self.stop.set()
        self._join()

    def kill(self) -> None:
        self.elector.kill()
        self._join()

    def _join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), f"{self.identity}'s elector did not return"


@pytest.fixture
def candidates(leases: Leases) -> Iterator[Callable[[str], Candidate]]:
    made: list[Candidate] = []

    def make(identity: str) -> Candidate:
        store = PartitionableStore(leases.new_store())
        elector = LeaseElector(None, namespace=leases.namespace, name=NAME, identity=identity,
                               lease_store=store, **TIMING)
        made.append(Candidate(identity, store, elector))
        return made[-1]

    yield make
    for candidate in made:
        candidate.store.cut = False
        if candidate.thread is not None and candidate.thread.is_alive():
            candidate.shutdown()


def leader_of(*cands: Candidate) -> Candidate | None:
    leading = [c for c in cands if c.elector.is_leader]
    assert len(leading) <= 1, f"two leaders: {[c.identity for c in leading]}"
    return leading[0] if leading else None


def hold(seconds: float, check: Callable[[], None]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        check()
        time.sleep(0.02)


# --- the LeaseStore port -----------------------------------------------------------------------
def test_store_get_create_replace_with_optimistic_concurrency(leases: Leases):
    a, b = leases.new_store(), leases.new_store()
    assert a.get(5) is None
    when = datetime(2026, 11, 22, 9, 0, 0, 654321, tzinfo=timezone.utc)
    created = a.create(LeaseRecord("a", 3, when, when, 0), 5)
    assert created.resource_version and created.holder == "a" and created.renew_time == when
    with pytest.raises(KubeConflict):
        b.create(LeaseRecord("b", 3, when, when, 0), 5)
    seen_by_b = b.get(5)
    assert seen_by_b == created
    later = datetime(2026, 11, 22, 9, 0, 1, 123456, tzinfo=timezone.utc)
    renewed = a.replace(LeaseRecord("a", 3, when, later, 0, created.resource_version), 5)
    assert renewed.renew_time == later and renewed.renew_time.tzinfo is not None
    assert renewed.resource_version != created.resource_version
    with pytest.raises(KubeConflict):  # b read before a's renewal: its write must lose
        b.replace(LeaseRecord("b", 3, later, later, 1, seen_by_b.resource_version), 5)
    whole_second = datetime(2026, 11, 22, 9, 0, 2, tzinfo=timezone.utc)  # the client drops ".000000"
    released = a.replace(LeaseRecord("", 1, whole_second, whole_second, 0, renewed.resource_version), 5)
    assert b.get(5) == released and released.holder == ""
    assert abs(released.renew_time - whole_second) <= timedelta(microseconds=1)


# --- the elector ----------------------------------------------------------------------------------
def test_two_candidates_elect_exactly_one_leader(candidates):
    a, b = candidates("replica-a").start(), candidates("replica-b").start()
    first = wait_for(lambda: leader_of(a, b), timeout=5, what="a leader")
    hold(TIMING["lease_duration"] + 1, lambda: (leader_of(a, b) is first) or pytest.fail("leadership moved"))
    other = b if first is a else a
    assert [w for _, w in first.events] == ["started"] and other.events == []
    assert first.store.get(5).holder == first.identity


def test_a_killed_leader_is_replaced_within_the_lease_duration(candidates):
    a = candidates("replica-a").start()
    wait_for(lambda: a.elector.is_leader, timeout=5, what="a leading")
    b = candidates("replica-b").start()
    time.sleep(1.0)  # b has seen a few renewals
    killed_at = time.monotonic()
    a.kill()  # no release, no callback: as SIGKILL
    wait_for(lambda: b.elector.is_leader, timeout=TIMING["lease_duration"] + 5, what="b taking over")
    handover = b.first("started") - killed_at
    print(f"[{b.store.inner.__class__.__name__}] handover after a kill: {handover:.2f}s")
    # Not before the lease could have expired (a full lease duration after a's last renewal)...
    assert b.first("started") >= a.store.last_write_at + TIMING["lease_duration"] - 0.1
    # ...and no later than that plus the follower's poll and observation lag.
    assert handover <= TIMING["lease_duration"] + 2 * TIMING["retry_period"] + SLACK
    record = b.store.get(5)
    assert record.holder == "replica-b" and record.transitions == 1


def test_a_clean_stop_hands_over_at_once(candidates):
    a = candidates("replica-a").start()
    wait_for(lambda: a.elector.is_leader, timeout=5, what="a leading")
    b = candidates("replica-b").start()
    time.sleep(1.0)
    stopped_at = time.monotonic()
    a.shutdown()
    assert [w for _, w in a.events] == ["started", "stopped"]
    wait_for(lambda: b.elector.is_leader, timeout=5, what="b taking over")
    handover = b.first("started") - stopped_at
    print(f"[{b.store.inner.__class__.__name__}] handover after a clean stop: {handover:.2f}s")
    assert handover <= TIMING["retry_period"] + SLACK
    assert b.store.get(5).transitions == 1


def test_a_leader_cut_off_from_the_api_stops_before_another_starts(candidates):
    a = candidates("replica-a").start()
    wait_for(lambda: a.elector.is_leader, timeout=5, what="a leading")
    b = candidates("replica-b").start()
    time.sleep(1.0)
    cut_at = time.monotonic()
    a.store.cut = True
    wait_for(lambda: b.elector.is_leader, timeout=TIMING["lease_duration"] + 5, what="b taking over")
    stepped_down, took_over = a.first("stopped"), b.first("started")
    print(f"[{b.store.inner.__class__.__name__}] cut off: stepped down after {stepped_down - cut_at:.2f}s, "
          f"the other started {took_over - stepped_down:.2f}s later")
    assert stepped_down - cut_at <= TIMING["renew_deadline"] + SLACK
    assert took_over > stepped_down
    a.store.cut = False  # back online: it follows, it does not fight
    hold(2.0, lambda: leader_of(a, b) is b or pytest.fail("leadership moved back"))


# --- real API only --------------------------------------------------------------------------------
def test_the_lease_object_as_the_api_server_shows_it(k8s_api, k8s_namespace):
    from kubernetes import client

    coordination = client.CoordinationV1Api(k8s_api)
    elector = LeaseElector(k8s_api, namespace=k8s_namespace, name=NAME, identity="pod-0", **TIMING)
    stop, calls = threading.Event(), []
    thread = threading.Thread(target=elector.run, daemon=True,
                              args=(stop, lambda: calls.append("started"), lambda: calls.append("stopped")))
    thread.start()
    try:
        wait_for(lambda: elector.is_leader, timeout=5, what="pod-0 leading")
        lease = coordination.read_namespaced_lease(NAME, k8s_namespace)
        spec = lease.spec
        assert spec.holder_identity == "pod-0" and spec.lease_duration_seconds == 3 and spec.lease_transitions == 0
        assert spec.acquire_time.utcoffset().total_seconds() == 0
        assert abs((datetime.now(timezone.utc) - spec.renew_time).total_seconds()) < 2
        first_renewal = spec.renew_time
        wait_for(lambda: coordination.read_namespaced_lease(NAME, k8s_namespace).spec.renew_time > first_renewal,
                 timeout=3, what="a renewal")
    finally:
        stop.set()
        thread.join(timeout=10)
        elector.close()
    assert calls == ["started", "stopped"]
    released = coordination.read_namespaced_lease(NAME, k8s_namespace).spec
    assert not released.holder_identity and released.lease_duration_seconds == 1 and released.lease_transitions == 0


def test_an_api_server_that_never_answers_costs_one_timeout_not_retries():
    """Against a socket that accepts and stays silent, a call ends at its timeout (urllib3 retries off)."""
    from kubernetes import client

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
    try:
        config = client.Configuration()
        config.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = KubeLeaseStore(client.ApiClient(config), "ns", NAME)
        started = time.monotonic()
        with pytest.raises(KubeError):
            store.get(0.5)
        assert time.monotonic() - started < 1.8  # well under a urllib3 retry (>= 2 s)
        store.close()
    finally:
        silent.close()
