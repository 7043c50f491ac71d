"""LeaseElector on in-memory Leases and a virtual clock: every round is scheduled, nothing sleeps."""
from __future__ import annotations

import heapq
import threading
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.k8s.errors import KubeTransient
from adapters.k8s.leader import LeaseElector, LeaseRecord, wire_time
from tests.fakes.leases import FakeLeaseServer, PartitionableStore

NS, NAME = "expbot", "expbot-leader"
TIMING = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0}
START = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


class VirtualClock:
    """now()/monotonic() move only when the simulation (or wait()) says so."""

    def __init__(self) -> None:
        self.t = 0.0
        self.at: list[tuple[float, object]] = []  # (time, action) run by wait() when time passes them

    def now(self) -> datetime:
        return START + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        end = self.t + seconds
        while self.at and self.at[0][0] <= end and not event.is_set():
            when, action = self.at.pop(0)
            self.t = max(self.t, when)
            action()
        if not event.is_set():
            self.t = end
        return event.is_set()


class Replica:
    def __init__(self, sim: Sim, identity: str, store) -> None:
        self.sim, self.identity, self.store = sim, identity, store
        self.elector = LeaseElector(None, namespace=NS, name=NAME, identity=identity, clock=sim.clock,
                                    lease_store=store, **sim.timing)
        self.calls: list[str] = []
        self.alive = True

    def started(self) -> None:
        self.calls.append("started")
        self.sim.history.append((self.sim.clock.t, self.identity, "started"))

    def stopped(self) -> None:
        self.calls.append("stopped")
        self.sim.history.append((self.sim.clock.t, self.identity, "stopped"))

    def step(self) -> float:
        return self.elector.step(self.started, self.stopped)


class Sim:
    """Replicas sharing one fake API server; each runs its next round when its delay has passed."""

    def __init__(self, n: int = 2, **timing: float) -> None:
        self.clock, self.server = VirtualClock(), FakeLeaseServer()
        self.timing = {**TIMING, **timing}
        self.history: list[tuple[float, str, str]] = []
        self.replicas: list[Replica] = []
        self._queue: list[tuple[float, int, Replica]] = []
        self._seq = 0
        for i in range(n):
            self.add(f"r{i}")

    def add(self, identity: str, index: int | None = None) -> Replica:
        """A new replica (at index: in place of a dead one, e.g. a restarted container)."""
        replica = Replica(self, identity, PartitionableStore(self.server.store(NS, NAME)))
        if index is None:
            self.replicas.append(replica)
        else:
            assert not self.replicas[index].alive
            self.replicas[index] = replica
        self._schedule(self.clock.t, replica)
        return replica

    def _schedule(self, when: float, replica: Replica) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, replica))

    def run_until(self, end: float) -> None:
        while self._queue and self._queue[0][0] <= end:
            when, _, replica = heapq.heappop(self._queue)
            if not replica.alive:
                continue
            self.clock.t = when
            delay = replica.step()
            assert delay > 0
            self.check()
            if replica.elector.retired:
                replica.alive = False  # it stopped leading: serve exits, a fresh process follows
                continue
            self._schedule(when + delay, replica)
        self.clock.t = end

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.t + seconds)

    def check(self) -> None:
        acting = [r.identity for r in self.replicas if r.alive and r.elector.is_leader]
        assert len(acting) <= 1, f"two leaders at t={self.clock.t}: {acting}"
        for r in self.replicas:
            assert all(a != b for a, b in zip(r.calls, r.calls[1:])), f"{r.identity}: {r.calls}"
            assert not r.calls or r.calls[0] == "started"

    def leaders(self) -> list[str]:
        return [r.identity for r in self.replicas if r.alive and r.elector.is_leader]

    def kill(self, replica: Replica) -> None:
        replica.alive = False

    def stop(self, replica: Replica) -> None:
        replica.alive = False
        replica.elector.resign(replica.stopped)
        self.check()

    def lease(self) -> LeaseRecord:
        return self.server.leases[(NS, NAME)]

    def first(self, identity: str, what: str, after: float = 0.0) -> float:
        return next(t for t, who, w in self.history if who == identity and w == what and t >= after)


def test_the_first_replica_creates_the_lease_and_leads():
    sim = Sim(n=1)
    sim.run_for(0)
    lease = sim.lease()
    assert sim.leaders() == ["r0"] and sim.replicas[0].calls == ["started"]
    assert lease.holder == "r0" and lease.lease_duration_seconds == 15 and lease.transitions == 0
    assert lease.acquire_time == lease.renew_time == START
    assert lease.renew_time.tzinfo is not None


def test_renewals_move_renew_time_every_retry_period_and_keep_acquire_time():
    sim = Sim(n=1)
    sim.run_for(0)
    sim.run_for(9)
    lease = sim.lease()
    assert lease.acquire_time == START and lease.renew_time == START + timedelta(seconds=8)
    assert lease.transitions == 0 and sim.replicas[0].calls == ["started"]
    assert [verb for verb, _, _ in sim.server.writes] == ["create"] + ["replace"] * 4


def test_a_second_replica_follows_without_error_or_transition():
    sim = Sim(n=2)
    sim.run_for(60)
    assert sim.leaders() == ["r0"]
    assert sim.replicas[1].calls == [] and sim.lease().transitions == 0


def test_a_killed_leader_is_replaced_after_the_lease_expires_on_the_followers_clock():
    sim = Sim(n=2)
    sim.run_for(30)
    last_renewal = sim.lease().renew_time
    sim.kill(sim.replicas[0])
    killed_at = sim.clock.t
    sim.run_for(30)
    took_over = sim.first("r1", "started")
    assert sim.leaders() == ["r1"]
    # Expired = unchanged for leaseDurationSeconds since r1 saw it, checked every retry period.
    assert killed_at + 15 - 2 <= took_over <= killed_at + 15 + 2 * 2
    assert took_over - (last_renewal - START).total_seconds() >= 15
    lease = sim.lease()
    assert lease.holder == "r1" and lease.transitions == 1 and lease.acquire_time == START + timedelta(seconds=took_over)


def test_a_clean_stop_hands_over_within_one_retry_period():
    sim = Sim(n=2)
    sim.run_for(31)
    sim.stop(sim.replicas[0])
    stopped_at = sim.clock.t
    assert sim.replicas[0].calls == ["started", "stopped"]
    assert sim.lease().holder == "" and sim.lease().transitions == 0  # released, not a transition
    sim.run_for(10)
    assert sim.leaders() == ["r1"]
    assert sim.first("r1", "started") - stopped_at <= 2
    assert sim.lease().transitions == 1


def test_a_cut_off_leader_stops_acting_at_its_renew_deadline_before_anyone_takes_over():
    sim = Sim(n=2)
    sim.run_for(20)
    leader = sim.replicas[0]
    leader.store.cut = True
    sim.run_for(40)
    last_ok = 20.0  # the round at t=20 renewed; the one at t=22 was the first to fail
    stepped_down = sim.first("r0", "stopped")
    took_over = sim.first("r1", "started")
    assert stepped_down == last_ok + 10  # exactly its renew deadline: it woke up for it
    assert took_over >= stepped_down + 15 - 10 - 2  # the margin is lease_duration - renew_deadline
    assert sim.leaders() == ["r1"]
    leader.store.cut = False
    sim.run_for(60)
    assert sim.leaders() == ["r1"] and leader.calls == ["started", "stopped"]  # it follows quietly now


def test_a_leader_whose_api_hangs_never_waits_past_its_deadline():
    """Each call blocks until its timeout: the timeouts themselves must end at the renew deadline."""
    sim = Sim(n=1)

    class Hanging:
        def __init__(self, inner) -> None:
            self.inner, self.hang, self.timeouts = inner, False, []

        def _maybe_hang(self, timeout: float) -> None:
            self.timeouts.append(timeout)
            if self.hang:
                sim.clock.t += timeout
                raise KubeTransient("read timed out")

        def get(self, timeout):
            self._maybe_hang(timeout)
            return self.inner.get(timeout)

        def create(self, record, timeout):
            self._maybe_hang(timeout)
            return self.inner.create(record, timeout)

        def replace(self, record, timeout):
            self._maybe_hang(timeout)
            return self.inner.replace(record, timeout)

    store = Hanging(sim.server.store(NS, NAME))
    replica = Replica(sim, "solo", store)
    replica.step()
    sim.clock.t = 4.0
    replica.step()  # renewed at t=4: deadline t=14
    store.hang = True
    sim.clock.t = 6.0
    replica.step()  # blocks 8 s, until t=14 exactly, then steps down
    assert sim.clock.t == pytest.approx(14.0)
    assert replica.calls == ["started", "stopped"] and not replica.elector.is_leader
    assert store.timeouts[-1] == pytest.approx(8.0)


def test_a_lease_already_naming_us_is_taken_at_once_after_a_restart():
    sim = Sim(n=1)
    sim.run_for(10)
    sim.kill(sim.replicas[0])
    again = sim.add("r0", 0)  # the container restarted in the same pod: same identity
    sim.run_for(0)
    assert again.calls == ["started"] and sim.lease().transitions == 0
    assert sim.lease().acquire_time == START  # still the same term


def test_a_stale_lease_from_a_dead_replica_is_waited_out_by_a_newcomer():
    sim = Sim(n=0)
    sim.server.leases[(NS, NAME)] = LeaseRecord("gone", 15, START - timedelta(hours=1), START - timedelta(hours=1), 7, "1")
    newcomer = sim.add("new")
    sim.run_for(14)
    assert newcomer.calls == []  # its own clock has seen the record for only 14 s
    sim.run_for(4)
    assert newcomer.calls == ["started"] and sim.lease().transitions == 8


def test_two_replicas_racing_for_a_missing_lease_get_one_winner_and_no_error(caplog):
    sim = Sim(n=0)
    a, b = sim.add("a"), sim.add("b")
    store_b_inner = b.store.inner

    class RaceFirst:  # a's create lands between b's get and b's create
        def get(self, timeout):
            record = store_b_inner.get(timeout)
            a.step()
            return record

        def create(self, record, timeout):
            return store_b_inner.create(record, timeout)

        def replace(self, record, timeout):
            return store_b_inner.replace(record, timeout)

    b.store.inner = RaceFirst()
    with caplog.at_level("WARNING"):
        b.step()
    assert a.calls == ["started"] and b.calls == [] and sim.lease().holder == "a"
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_a_leader_that_sees_another_holder_steps_down_at_once():
    sim = Sim(n=1)
    sim.run_for(4)
    lease = sim.lease()
    sim.server.leases[(NS, NAME)] = LeaseRecord("usurper", 15, lease.renew_time, lease.renew_time, 1, "999")
    sim.run_for(2)
    assert sim.replicas[0].calls == ["started", "stopped"]


def test_a_failing_on_started_leading_is_undone_and_the_lease_freed():
    sim = Sim(n=0)
    calls = []
    elector = LeaseElector(None, namespace=NS, name=NAME, identity="x", clock=sim.clock,
                           lease_store=sim.server.store(NS, NAME), **TIMING)

    def started():
        calls.append("started")
        raise RuntimeError("boom")

    elector.step(started, lambda: calls.append("stopped"))
    assert calls == ["started", "stopped"] and not elector.is_leader and sim.lease().holder == ""


def test_run_blocks_until_stop_then_stops_leading_and_releases():
    sim = Sim(n=0)
    stop = threading.Event()
    calls: list[tuple[float, str]] = []
    elector = LeaseElector(None, namespace=NS, name=NAME, identity="x", clock=sim.clock,
                           lease_store=sim.server.store(NS, NAME), **TIMING)
    sim.clock.at.append((101.0, stop.set))
    elector.run(stop, lambda: calls.append((sim.clock.t, "started")), lambda: calls.append((sim.clock.t, "stopped")))
    assert calls == [(0.0, "started"), (101.0, "stopped")]
    lease = sim.lease()
    assert lease.holder == "" and lease.lease_duration_seconds == 1 and lease.renew_time == START + timedelta(seconds=101)
    assert not elector.is_leader


def test_kill_leaves_the_lease_held_and_calls_nothing():
    sim = Sim(n=0)
    stop = threading.Event()
    calls: list[str] = []
    elector = LeaseElector(None, namespace=NS, name=NAME, identity="x", clock=sim.clock,
                           lease_store=sim.server.store(NS, NAME), **TIMING)
    sim.clock.at.append((7.0, elector.kill))
    elector.run(stop, lambda: calls.append("started"), lambda: calls.append("stopped"))
    assert calls == ["started"] and sim.lease().holder == "x" and not stop.is_set()
    assert sim.lease().renew_time == START + timedelta(seconds=6)


def _elector(sim: Sim, store, identity: str = "x") -> LeaseElector:
    return LeaseElector(None, namespace=NS, name=NAME, identity=identity, clock=sim.clock, lease_store=store, **TIMING)


def test_run_ends_when_it_steps_down_and_never_takes_the_lease_again():
    """The lease still names a leader that could not renew: "ours at once" made it leader again."""
    sim = Sim(n=0)
    store = PartitionableStore(sim.server.store(NS, NAME))
    elector, stop, calls = _elector(sim, store), threading.Event(), []
    sim.clock.at.extend([(21.0, lambda: setattr(store, "cut", True)), (31.0, lambda: setattr(store, "cut", False)),
                         (200.0, stop.set)])  # the backstop: run() must end long before
    elector.run(stop, lambda: calls.append((sim.clock.t, "started")), lambda: calls.append((sim.clock.t, "stopped")))
    assert calls == [(0.0, "started"), (30.0, "stopped")] and sim.clock.t == 30.0 and not stop.is_set()
    store.cut = False
    writes = len(sim.server.writes)
    for _ in range(10):  # even driven round by round, with the API back and the lease naming it
        sim.clock.t += elector.step(lambda: calls.append((sim.clock.t, "started")), lambda: None)
    assert len(calls) == 2 and len(sim.server.writes) == writes and elector.retired
    assert sim.lease().holder == "x" and sim.lease().renew_time == START + timedelta(seconds=20)


def test_a_replica_that_stepped_down_releases_the_lease_on_its_way_out():
    sim = Sim(n=0)
    store = PartitionableStore(sim.server.store(NS, NAME))
    elector, stop, calls = _elector(sim, store), threading.Event(), []

    def stopped() -> None:
        calls.append((sim.clock.t, "stopped"))
        store.cut = False  # the API server is back by the time it exits

    sim.clock.at.extend([(21.0, lambda: setattr(store, "cut", True)), (200.0, stop.set)])
    elector.run(stop, lambda: calls.append((sim.clock.t, "started")), stopped)
    assert calls == [(0.0, "started"), (30.0, "stopped")] and sim.clock.t == 30.0
    lease = sim.lease()
    assert lease.holder == "" and lease.renew_time == START + timedelta(seconds=30)
    assert [record.holder for _, _, record in sim.server.writes][-1:] == [""]  # the release was its last write


def test_a_stopping_elector_takes_nothing_not_even_a_free_lease():
    """SIGTERM while a follower's read is in flight: it must not become leader on its way out."""
    sim = Sim(n=0)
    inner, stop, calls = sim.server.store(NS, NAME), threading.Event(), []

    class StopDuringGet:
        def get(self, timeout):
            stop.set()
            return inner.get(timeout)

        def create(self, record, timeout):
            return inner.create(record, timeout)

        def replace(self, record, timeout):
            return inner.replace(record, timeout)

    _elector(sim, StopDuringGet()).run(stop, lambda: calls.append("started"), lambda: calls.append("stopped"))
    assert calls == [] and sim.server.writes == []


def test_the_release_on_stop_gives_up_within_two_seconds_when_the_api_hangs():
    sim = Sim(n=0)
    store = PartitionableStore(sim.server.store(NS, NAME))
    elector, stop = _elector(sim, store), threading.Event()
    hang = threading.Event()
    original_get = store.get

    def get(timeout):
        if hang.is_set():
            sim.clock.t += timeout  # the call blocks for its whole timeout, then fails
            raise KubeTransient("read timed out")
        return original_get(timeout)

    store.get = get
    sim.clock.at.extend([(5.0, hang.set), (5.0, stop.set)])
    elector.run(stop, lambda: None, lambda: None)
    assert sim.clock.t - 5.0 <= 2.0
    assert sim.lease().holder == "x"  # not released: it will expire


@pytest.mark.parametrize("timing", [
    {"lease_duration": 10, "renew_deadline": 10, "retry_period": 2},
    {"lease_duration": 15, "renew_deadline": 2, "retry_period": 2},
    {"lease_duration": 15, "renew_deadline": 10, "retry_period": 0},
])
def test_inconsistent_timing_is_refused(timing):
    with pytest.raises(ValueError):
        LeaseElector(None, namespace=NS, name=NAME, identity="x", lease_store=FakeLeaseServer().store(NS, NAME), **timing)


def test_wire_time_is_utc_and_never_a_whole_second():
    """A whole second would reach the API server without its six fractional digits (400)."""
    cet = timezone(timedelta(hours=1))
    assert wire_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=cet)) == datetime(2026, 1, 2, 2, 4, 5, 1, tzinfo=timezone.utc)
    assert wire_time(datetime(2026, 1, 2, 3, 4, 5, 12, tzinfo=cet)) == datetime(2026, 1, 2, 2, 4, 5, 12, tzinfo=timezone.utc)
    assert wire_time(START).tzinfo is timezone.utc


# --- property: whatever fails, never two leaders; once healed, someone leads -----------------
_actions = st.lists(st.tuples(
    st.floats(min_value=0.0, max_value=40.0),
    st.sampled_from(["cut", "heal", "kill", "stop", "restart"]),
    st.integers(min_value=0, max_value=2),
), max_size=12)


@settings(max_examples=150, deadline=None)
@given(actions=_actions)
def test_at_most_one_leader_and_alternating_callbacks_under_any_faults(actions):
    sim = Sim(n=3)
    for delay, action, index in actions:
        sim.run_for(delay)
        replica = sim.replicas[index]
        if action == "cut":
            replica.store.cut = True
        elif action == "heal":
            replica.store.cut = False
        elif action == "kill" and replica.alive:
            sim.kill(replica)
        elif action == "stop" and replica.alive:
            sim.stop(replica)
        elif action == "restart" and not replica.alive:
            sim.add(replica.identity, index)
    for replica in sim.replicas:
        replica.store.cut = False
    for index, replica in enumerate(sim.replicas):
        if not replica.alive:  # killed, stopped, or exited after stepping down: the orchestrator restarts it
            sim.add(replica.identity, index)
    sim.run_for(15 + 2 * 2 + 0.001)
    assert len(sim.leaders()) == 1


def test_a_clock_without_monotonic_time_and_wait_is_refused():
    from tests.fakes.clock import FakeClock

    with pytest.raises(TypeError, match="ElectionClock"):
        LeaseElector(None, namespace=NS, name=NAME, identity="x", clock=FakeClock(),
                     lease_store=FakeLeaseServer().store(NS, NAME))
