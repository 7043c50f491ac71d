"""The supervisor with a watching backend: passes over just what changed, resyncs, releases, cluster verdicts."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest

from core import commands
from core.model import AttemptState, State
from core.ports import AttemptPhase
from tests.polling import wait_for
from tests.unit.conftest import World
from tests.unit.test_supervisor import start


class Spy:
    """Records the supervisor's passes as they end: "full" for reconcile_once, the id set for reconcile_ids."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.passes: list[object] = []
        self.reconciled: list[str] = []
        sup = world.supervisor
        real_once, real_ids, real_one = sup.reconcile_once, sup.reconcile_ids, sup.reconcile

        def once():
            try:
                return real_once()
            finally:
                self.passes.append("full")

        def ids(experiment_ids):
            try:
                return real_ids(experiment_ids)
            finally:
                self.passes.append(frozenset(experiment_ids))

        def one(experiment_id, *rest):
            self.reconciled.append(experiment_id)
            return real_one(experiment_id, *rest)

        monkeypatch.setattr(sup, "reconcile_once", once)
        monkeypatch.setattr(sup, "reconcile_ids", ids)
        monkeypatch.setattr(sup, "reconcile", one)

    @property
    def full(self) -> int:
        return self.passes.count("full")


@contextmanager
def supervising(world: World, resync_interval: float) -> Iterator[threading.Event]:
    """Supervisor.run in a thread until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=world.supervisor.run, args=(stop, resync_interval), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        world.backend._changed.set()  # wake its wait at once rather than after the interval
        thread.join(timeout=5)
        assert not thread.is_alive(), "Supervisor.run did not stop"


def state(world: World, name: str) -> State:
    return world.get(name).state


# ------------------------------------------------------------------------------ reconcile_ids
def test_reconcile_ids_touches_only_the_named_experiments(world):
    a, b, c = (start(world, f"{n} -- python train.py") for n in "abc")
    for exp in (a, b, c):
        world.backend.exit(exp.id, 1, 0)
    world.backend.lose(c.id, 1)
    due = world.supervisor.reconcile_ids({a.id, c.id, "no-such-experiment"})
    assert state(world, "a") == State.SUCCEEDED and state(world, "b") == State.RUNNING
    assert state(world, "c") == State.RESTARTING
    assert due == world.get("c").next_attempt_at == world.clock.now() + timedelta(seconds=10)
    assert world.backend.released == [a.id]


def test_reconcile_ids_goes_on_past_a_broken_experiment(world, monkeypatch):
    a, b = start(world, "a -- python train.py"), start(world, "b -- python train.py")
    world.backend.exit(a.id, 1, 0)
    world.backend.exit(b.id, 1, 0)
    real = world.backend.status
    monkeypatch.setattr(world.backend, "status",
                        lambda eid, n: (_ for _ in ()).throw(RuntimeError("api")) if eid == a.id else real(eid, n))
    assert world.supervisor.reconcile_ids({a.id, b.id}) is None
    assert state(world, "a") == State.RUNNING and state(world, "b") == State.SUCCEEDED


# ---------------------------------------------------------------------------------------- run
def test_run_reconciles_what_the_watch_names_without_waiting_for_a_resync(world, monkeypatch):
    world.backend.names_changes = True
    world.launch("a -- python train.py")
    world.launch("b -- python train.py")
    spy = Spy(world, monkeypatch)
    with supervising(world, resync_interval=60.0):
        wait_for(lambda: state(world, "a") == state(world, "b") == State.STARTING, 5, "both submitted")
        a, b = world.get("a"), world.get("b")
        # Each submit is a change the watch names: looked at again (in a pass of its own or in the
        # pass under way), without a resync.
        wait_for(lambda: min(spy.reconciled.count(a.id), spy.reconciled.count(b.id)) >= 2, 5,
                 "a second look at both submits")
        before = len(spy.reconciled)
        world.backend.run(a.id, 1)
        wait_for(lambda: state(world, "a") == State.RUNNING, 5, "a running well before the 60s resync")
        assert set(spy.reconciled[before:]) == {a.id}  # b was not looked at
        world.backend.exit(b.id, 1, 0)
        wait_for(lambda: state(world, "b") == State.SUCCEEDED, 5, "b's end, found without a resync")
        assert spy.reconciled[-1] == b.id and world.backend.released == [b.id]
    assert spy.full == 1  # the first pass only: the fake clock never reached the resync


def test_run_makes_a_full_pass_every_resync_interval(world, monkeypatch):
    world.backend.names_changes = True
    exp = start(world)
    spy = Spy(world, monkeypatch)
    with supervising(world, resync_interval=0.2):
        wait_for(lambda: spy.full == 1, 5, "the first full pass")
        wait_for(lambda: exp.id in spy.reconciled, 5, "a look at the start's changes")
        # A change the watch never reported (a missed event): only a full pass can find it.
        found = world.backend.attempts[(exp.id, 1)]
        found.status = replace(found.status, phase=AttemptPhase.EXITED, exit_code=0)
        time.sleep(0.5)  # more than two intervals of real time, but the (fake) clock has not moved
        assert spy.full == 1 and state(world, "exp") == State.RUNNING
        world.clock.advance(seconds=0.2)
        wait_for(lambda: spy.full == 2, 5, "the resync")
        assert state(world, "exp") == State.SUCCEEDED  # found by the full pass: nothing named it
        for passes in (3, 4):
            world.clock.advance(seconds=0.2)
            wait_for(lambda n=passes: spy.full == n, 5, f"full pass {passes}")


def test_run_without_named_changes_looks_at_everything_each_time(world, monkeypatch):
    exp = start(world)  # names_changes is False: wait_for_change returns None
    spy = Spy(world, monkeypatch)
    with supervising(world, resync_interval=60.0):
        wait_for(lambda: spy.full >= 1, 5, "the first full pass")
        before = spy.full
        world.backend.exit(exp.id, 1, 0)
        wait_for(lambda: spy.full > before and state(world, "exp") == State.SUCCEEDED, 5,
                 "the exit seen well before the 60s resync")
        assert not [p for p in spy.passes if p != "full"]


def test_run_does_not_spin_when_full_passes_keep_failing(world, monkeypatch):
    world.backend.names_changes = True
    start(world)
    spy = Spy(world, monkeypatch)
    failing = threading.Event()
    real_factory = world.supervisor.uow_factory

    def factory():
        if failing.is_set():
            raise RuntimeError("database is locked")
        return real_factory()

    monkeypatch.setattr(world.supervisor, "uow_factory", factory)
    with supervising(world, resync_interval=0.2):
        wait_for(lambda: spy.full == 1, 5, "the first full pass")
        failing.set()
        world.clock.advance(seconds=0.2)  # the next full pass is due, and fails
        time.sleep(0.6)
    assert spy.full <= 8, f"{spy.full} full passes in 0.6s with a 0.2s interval"


# ------------------------------------------------------------------------------------ release
def test_terminal_experiments_are_released_once(world):
    ok = start(world, "ok -- python train.py")
    bad = start(world, "bad --max-restarts 0 -- python train.py")
    world.backend.exit(ok.id, 1, 0)
    world.backend.exit(bad.id, 1, 2)
    world.supervisor.reconcile_once()
    assert sorted(world.backend.released) == sorted([ok.id, bad.id])
    world.clock.advance(hours=1)
    world.supervisor.reconcile_once()
    world.supervisor.reconcile_ids({ok.id, bad.id})
    assert len(world.backend.released) == 2


def test_a_restart_keeps_what_the_experiment_holds(world):
    exp = start(world, "exp --max-restarts 2 -- python train.py")
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    assert state(world, "exp") == State.RESTARTING and world.backend.released == []


def test_stopping_releases(world):
    exp = start(world)
    world.bus.handle(commands.StopExperiment(name="exp", by="ana"))
    assert world.get("exp").state == State.STOPPING and world.backend.released == []
    world.supervisor.reconcile_once()
    assert [(s[0], s[1]) for s in world.backend.stops] == [(exp.id, 1)]
    world.supervisor.reconcile_once()
    assert world.get("exp").state == State.STOPPED and world.backend.released == [exp.id]
    world.supervisor.reconcile_once()
    assert world.backend.released.count(exp.id) == 1


def test_stopping_an_experiment_that_never_started_releases_it_too(world):
    start(world, "big --gpus 4 -- python train.py")
    world.launch("waiting --gpus 4 -- python train.py")
    world.supervisor.reconcile_once()
    waiting = world.get("waiting")
    assert waiting.state == State.QUEUED and waiting.attempts == []
    world.bus.handle(commands.StopExperiment(name="waiting", by="ana"))
    assert world.backend.released == [waiting.id] and world.backend.stops == []


def test_a_failing_release_does_not_undo_the_end(world, monkeypatch):
    exp = start(world)
    monkeypatch.setattr(world.backend, "release", lambda eid: (_ for _ in ()).throw(RuntimeError("pvc busy")))
    world.backend.exit(exp.id, 1, 0)
    world.supervisor.reconcile_once()
    assert state(world, "exp") == State.SUCCEEDED


# ---------------------------------------------------------------------------- cluster verdicts
@pytest.mark.parametrize("code", [None, 143])
def test_cluster_deadline_ends_the_experiment_at_max_runtime_without_restart(world, code):
    exp = start(world, "exp --max-runtime 2h --max-restarts 5 --max-preemptions 5 -- python train.py")
    world.clock.advance(minutes=5)  # the cluster's clock ran ahead: expbot's own limit is far away
    world.backend._set(exp.id, 1, phase=AttemptPhase.EXITED, exit_code=code, deadline_exceeded=True,
                       reason="max runtime reached (the Job's activeDeadlineSeconds)", ended_at=world.clock.now())
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and exp.attempts[0].failure_class == "max-runtime"
    assert "max runtime 2h" in exp.state_reason
    assert exp.user_restarts == exp.infra_restarts == 0
    world.clock.advance(minutes=30)
    world.supervisor.reconcile_once()
    assert len(world.get("exp").attempts) == 1 and len(world.backend.submits) == 1
    assert world.backend.stops == [] and world.backend.released == [exp.id]


def test_an_attempt_the_cluster_gave_up_on_is_cleaned_up_after_the_decision(world, monkeypatch):
    exp = start(world, "exp --max-restarts 1 -- python train.py")
    seen_at_stop: list[tuple[State, AttemptState]] = []
    real_stop = world.backend.stop

    def stop(experiment_id, attempt, grace):
        stored = world.get("exp")
        seen_at_stop.append((stored.state, stored.attempts[attempt - 1].state))
        real_stop(experiment_id, attempt, grace)

    monkeypatch.setattr(world.backend, "stop", stop)
    reason = 'ImagePullBackOff: Back-off pulling image "ghcr.io/acme/trian:1"'
    world.backend._set(exp.id, 1, phase=AttemptPhase.EXITED, reason=reason, needs_cleanup=True,
                       ended_at=world.clock.now())
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.RESTARTING and exp.attempts[0].failure_class == "user" and exp.user_restarts == 1
    assert "ImagePullBackOff" in exp.attempts[0].reason
    assert world.backend.stops == [(exp.id, 1, world.supervisor.stop_grace)]
    assert seen_at_stop == [(State.RESTARTING, AttemptState.ENDED)]  # committed before the stop
    world.clock.advance(seconds=10)
    world.supervisor.reconcile_once()
    assert state(world, "exp") == State.STARTING and world.backend.submits[-1].attempt == 2
    world.backend._set(exp.id, 2, phase=AttemptPhase.EXITED, reason=reason, needs_cleanup=True,
                       ended_at=world.clock.now())
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and "max-restarts 1" in exp.state_reason
    assert [s[:2] for s in world.backend.stops] == [(exp.id, 1), (exp.id, 2)]
    assert world.backend.released == [exp.id]


def test_a_lost_attempt_whose_job_lingers_is_cleaned_up_and_restarted_as_infra(world):
    exp = start(world)
    world.backend._set(exp.id, 1, phase=AttemptPhase.LOST, infra=True, needs_cleanup=True,
                       reason="its Job was deleted outside expbot", ended_at=world.clock.now())
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.RESTARTING and exp.attempts[0].failure_class == "infra"
    assert [s[:2] for s in world.backend.stops] == [(exp.id, 1)]


def test_an_ordinary_exit_needs_no_stop(world):
    exp = start(world, "exp --max-restarts 1 -- python train.py")
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    assert state(world, "exp") == State.RESTARTING and world.backend.stops == []


# ------------------------------------------------------------------------- bursts and wakes
def test_a_burst_of_launches_is_started_a_slice_per_pass(world):
    world.supervisor.max_starts_per_pass = 2
    for n in "abcde":
        world.launch(f"{n} -- python train.py")
    started = []
    for _ in range(3):
        due = world.supervisor.reconcile_once()
        started.append(len(world.backend.submits))
        if len(world.backend.submits) < 5:
            assert due == world.clock.now()  # the rest wait for the next pass, in a moment
    assert started == [2, 4, 5]
    assert due is None
    assert [world.get(n).state for n in "abcde"] == [State.STARTING] * 5


def test_reconcile_ids_defers_starts_beyond_the_slice_to_the_next_pass(world):
    world.supervisor.max_starts_per_pass = 1
    for n in "ab":
        world.launch(f"{n} -- python train.py")
    due = world.supervisor.reconcile_ids({world.get("a").id, world.get("b").id})
    assert len(world.backend.submits) == 1 and due == world.clock.now()
    assert sorted(world.get(n).state for n in "ab") == sorted([State.STARTING, State.QUEUED])


def test_wake_starts_a_new_launch_without_waiting_for_a_resync(world, monkeypatch):
    world.backend.names_changes = True
    spy = Spy(world, monkeypatch)
    with supervising(world, resync_interval=60.0):
        wait_for(lambda: spy.full == 1, 5, "the first full pass")
        world.launch("late -- python train.py")
        late = world.get("late")
        time.sleep(0.3)
        assert late.state == State.QUEUED and state(world, "late") == State.QUEUED  # nothing looked yet
        world.supervisor.wake(late.id)
        wait_for(lambda: state(world, "late") == State.STARTING, 5, "started on the wake")
        assert frozenset({late.id}) in spy.passes and spy.full == 1


def test_a_restart_falling_due_is_reconciled_alone_not_by_a_whole_pass(world, monkeypatch):
    world.backend.names_changes = True
    exp = start(world, "flaky --max-restarts 2 -- python train.py")
    spy = Spy(world, monkeypatch)
    with supervising(world, resync_interval=60.0):
        wait_for(lambda: spy.full == 1, 5, "the first full pass")
        world.backend.exit(exp.id, 1, 1)
        wait_for(lambda: state(world, "flaky") == State.RESTARTING, 5, "the restart scheduled (backoff 10 s)")
        time.sleep(0.3)
        assert len(world.backend.submits) == 1  # not before its time
        world.clock.advance(seconds=10)
        world.backend._changed.set()  # end the loop's real-time wait now that the fake clock moved
        wait_for(lambda: len(world.backend.submits) == 2, 5, "the second attempt submitted")
        assert spy.full == 1 and frozenset({exp.id}) in spy.passes


def test_a_burst_goes_on_in_slices_between_watch_changes_without_whole_passes(world, monkeypatch):
    world.backend.names_changes = True
    world.supervisor.max_starts_per_pass = 2
    for n in "abcde":
        world.launch(f"{n} -- python train.py")
    spy = Spy(world, monkeypatch)
    with supervising(world, resync_interval=60.0):
        wait_for(lambda: len(world.backend.submits) == 5, 5, "all five submitted")
        assert spy.full == 1  # the rest came in passes over just their ids
        assert len(spy.passes) >= 3  # two at a time: at least three passes for five


def test_an_attempt_that_ends_during_a_pass_is_acted_on_before_the_rest_of_the_pass(world, monkeypatch):
    running = start(world, "old -- python train.py")
    world.clock.advance(seconds=1)  # the pass looks at it first (oldest first), while it still runs
    for n in range(6):
        world.launch(f"new{n} -- python train.py")
    spy = Spy(world, monkeypatch)
    real_submit = world.backend.submit

    def submit(launch):
        if launch.experiment_id != running.id and (running.id, 1) in world.backend.attempts:
            if world.backend.attempts[(running.id, 1)].status.phase == AttemptPhase.RUNNING:
                world.backend.lose(running.id, 1)  # its node died while the pass was starting the others
                world.supervisor.scheduler.inbox.put({running.id})  # as the pump puts what the watch names
        return real_submit(launch)

    monkeypatch.setattr(world.backend, "submit", submit)
    world.supervisor.reconcile_once()
    new_ids = [world.get(f"new{n}").id for n in range(6)]
    # Looked at right after the start during which it ended, not at the next pass.
    assert spy.reconciled.index(running.id) == 1 and set(spy.reconciled) == {running.id, *new_ids}
    assert world.get("old").attempts[0].state == AttemptState.ENDED
