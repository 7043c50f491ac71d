"""One contract for every ClusterBackend: the in-memory fake, the local process runner and Kubernetes.

The Kubernetes column runs on the test control plane (KWOK pods). Queueing, checkpoints and logs
are the process backends' own (tests marked PROCESS): there the scheduler queues, attempts report
their checkpoints, and KWOK writes no logs; tests/k8s covers those on Kubernetes.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.passes import Inbox
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus
from core.spec import ExperimentSpec
from tests.integration.backend_drivers import Driver, FakeDriver, K8sDriver, LocalDriver
from tests.polling import wait_for

PROCESS = pytest.mark.parametrize("make", ["fake", "local"], indirect=True)


@pytest.fixture(params=["fake", "local", "k8s"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    drivers: list[Driver] = []
    if request.param == "k8s":
        api, namespace = request.getfixturevalue("k8s_api"), request.getfixturevalue("k8s_namespace")

    def factory(gpus: int = 2) -> Driver:
        driver: Driver
        if request.param == "fake":
            driver = FakeDriver(gpus)
        elif request.param == "local":
            driver = LocalDriver(tmp_path / str(len(drivers)), gpus)
        else:
            assert not drivers, "one Kubernetes driver per test: it owns the namespace"
            driver = K8sDriver(api, namespace, gpus)
        drivers.append(driver)
        return driver

    yield factory
    for driver in drivers:
        driver.close()


def launch(d: Driver, eid: str, attempt: int = 1, gpus: int = 1) -> AttemptLaunch:
    # One GPU by default: the test cluster's nodes are all tainted GPU nodes, which only a pod that
    # asks for a GPU tolerates.
    spec = ExperimentSpec(name=eid, command=d.command(), image="python:3.11-slim", gpus=gpus)
    return AttemptLaunch(eid, eid, attempt, spec, "alice", None, timedelta(hours=1))


def status(d: Driver, eid: str, n: int = 1) -> AttemptStatus:
    found = d.backend.status(eid, n)
    assert found is not None
    return found


def test_status_is_none_before_submit(make: Callable[..., Driver]) -> None:
    d = make()
    assert d.backend.status("exp-a", 1) is None


def test_submit_runs_the_attempt(make: Callable[..., Driver]) -> None:
    d = make()
    assert d.backend.submit(launch(d, "exp-a")).started
    d.started("exp-a", 1)
    st = status(d, "exp-a")
    assert st.phase == AttemptPhase.RUNNING
    assert st.started_at is not None and st.exit_code is None
    assert d.backend.status("exp-a", 2) is None


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_is_reported(make: Callable[..., Driver], code: int) -> None:
    d = make()
    d.backend.submit(launch(d, "exp-a"))
    d.started("exp-a", 1)
    d.finish("exp-a", 1, code)
    st = status(d, "exp-a")
    assert (st.phase, st.exit_code, st.infra) == (AttemptPhase.EXITED, code, False)
    assert st.ended_at is not None


def test_submit_is_idempotent(make: Callable[..., Driver]) -> None:
    d = make()
    assert d.backend.submit(launch(d, "exp-a")).started
    assert d.backend.submit(launch(d, "exp-a")).started
    d.started("exp-a", 1)
    d.finish("exp-a", 1, 0)
    assert d.backend.submit(launch(d, "exp-a")).started  # an ended attempt is not started again
    assert status(d, "exp-a").phase == AttemptPhase.EXITED
    assert d.starts("exp-a", 1) == 1


@PROCESS
def test_attempts_queue_for_gpus(make: Callable[..., Driver]) -> None:
    d = make(gpus=2)
    assert d.backend.submit(launch(d, "exp-a", gpus=1)).started
    assert d.backend.submit(launch(d, "exp-b", gpus=1)).started
    waiting = d.backend.submit(launch(d, "exp-c", gpus=1))
    assert not waiting.started
    assert waiting.reason == "waiting for 1 free GPU (2 of 2 in use)"
    assert d.backend.status("exp-c", 1) is None  # nothing was created
    d.started("exp-a", 1)
    d.finish("exp-a", 1, 0)
    assert d.backend.submit(launch(d, "exp-c", gpus=1)).started
    d.started("exp-c", 1)
    assert status(d, "exp-c").phase == AttemptPhase.RUNNING


def test_check_fits(make: Callable[..., Driver]) -> None:
    d = make(gpus=2)
    too_big = launch(d, "exp-a", gpus=3)
    why = d.backend.check_fits(too_big.spec)
    assert why is not None and "3 GPUs" in why and "2" in why  # what was asked and what the most is
    assert d.backend.check_fits(launch(d, "exp-b", gpus=2).spec) is None
    assert not d.backend.submit(too_big).started
    assert d.backend.status("exp-a", 1) is None


def test_stop_ends_the_attempt(make: Callable[..., Driver]) -> None:
    d = make()
    d.backend.submit(launch(d, "exp-a"))
    d.started("exp-a", 1)
    d.backend.stop("exp-a", 1, timedelta(seconds=5))
    if not d.forgets_stopped:  # the process backends' stop returns once the attempt has ended
        assert over(d, "exp-a")
    wait_for(lambda: over(d, "exp-a"), timeout=30, what="the stopped attempt to end")
    d.backend.stop("exp-a", 1, timedelta(seconds=5))  # already gone: nothing happens
    d.backend.stop("exp-never", 1, timedelta(seconds=5))
    assert over(d, "exp-a") and d.backend.status("exp-never", 1) is None


def over(d: Driver, eid: str, n: int = 1) -> bool:
    """The attempt ended (EXITED or LOST), or is forgotten where the backend forgets what it deleted."""
    found = d.backend.status(eid, n)
    if found is None:
        return d.forgets_stopped
    return found.phase in (AttemptPhase.EXITED, AttemptPhase.LOST)


@PROCESS
def test_latest_checkpoint(make: Callable[..., Driver]) -> None:
    d = make()
    assert d.backend.latest_checkpoint("exp-a", "*") is None
    d.add_checkpoint("exp-a", "ckpt-b.json", age=10)
    d.add_checkpoint("exp-a", "ckpt-a.json", age=0)  # newer, though its name sorts first
    latest = d.backend.latest_checkpoint("exp-a", "ckpt-*.json")
    assert latest is not None and latest.endswith("/ckpt-a.json") and os.path.isabs(latest)
    d.add_checkpoint("exp-a", "notes.txt", age=-5)
    assert d.backend.latest_checkpoint("exp-a", "ckpt-*.json") == latest
    assert str(d.backend.latest_checkpoint("exp-a", "*")).endswith("/notes.txt")
    assert d.backend.latest_checkpoint("exp-a", "*.pt") is None
    assert d.backend.latest_checkpoint("exp-b", "*") is None


@PROCESS
def test_logs(make: Callable[..., Driver]) -> None:
    d = make()
    assert d.backend.logs("exp-a", 1) == ""
    d.backend.submit(launch(d, "exp-a"))
    d.started("exp-a", 1)
    d.finish("exp-a", 1, 0, output="one\ntwo\nthree\n")
    assert d.backend.logs("exp-a", 1) == "one\ntwo\nthree\n"
    assert d.backend.logs("exp-a", 1, tail_lines=2) == "two\nthree\n"
    assert d.backend.logs("exp-a", 1, tail_lines=10) == "one\ntwo\nthree\n"


def test_wait_for_change(make: Callable[..., Driver]) -> None:
    d = make()
    began = time.monotonic()
    d.backend.wait_for_change(0.2)
    assert time.monotonic() - began >= 0.15
    d.backend.submit(launch(d, "exp-a"))
    d.started("exp-a", 1)
    d.backend.wait_for_change(0)  # forget changes so far
    threading.Timer(0.2, d.finish, args=("exp-a", 1, 0)).start()
    began = time.monotonic()
    d.backend.wait_for_change(10)
    assert time.monotonic() - began < 5
    wait_for(lambda: status(d, "exp-a").phase == AttemptPhase.EXITED)


def test_wake_ends_a_wait_at_once_and_names_the_experiment_if_changes_are_named(make: Callable[..., Driver]) -> None:
    # Wake-ups are the supervisor's own (core.passes): its inbox, pumping this backend's changes, ends at once.
    d = make()
    d.backend.wait_for_change(0)  # forget changes so far
    inbox, stop = Inbox(), threading.Event()
    pump = threading.Thread(target=inbox.pump, args=(d.backend.wait_for_change, stop), daemon=True)
    pump.start()
    try:
        inbox.wait(0)
        threading.Timer(0.2, inbox.wake, args=("exp-new",)).start()
        began = time.monotonic()
        changed: set[str] | None = set()
        while not changed and time.monotonic() - began < 5:  # the pump's empty rounds come in between
            changed = inbox.wait(10)
        assert time.monotonic() - began < 5
        assert changed is None or changed == {"exp-new"}  # None: this backend names no changes at all
    finally:
        stop.set()
        pump.join(timeout=5)
    assert not pump.is_alive()