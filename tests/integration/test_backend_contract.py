"""One contract for every ClusterBackend: the in-memory fake and the local process runner."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.local.runner import LocalRunner
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus
from core.spec import ExperimentSpec
from tests.fakes.backend import FakeBackend
from tests.polling import wait_for

# Waits for an order file named after its experiment and attempt, prints its output, exits with its code.
CONTROLLED = r"""
import json, os, pathlib, sys, time
ctl = pathlib.Path(sys.argv[1])
key = os.environ["EXPBOT_EXPERIMENT_ID"] + "-" + os.environ["EXPBOT_ATTEMPT"]
with open(ctl / (key + ".started"), "a") as f:
    f.write("started\n")
order = ctl / (key + ".json")
while not order.exists():
    time.sleep(0.01)
o = json.loads(order.read_text())
sys.stdout.write(o["output"])
sys.stdout.flush()
sys.exit(o["code"])
"""




class FakeDriver:
    """Moves FakeBackend attempts by hand."""

    def __init__(self, gpus: int) -> None:
        self.backend = FakeBackend(gpus=gpus)

    def command(self) -> tuple[str, ...]:
        return ("train",)

    def started(self, eid: str, n: int) -> None:
        self.backend.run(eid, n)

    def finish(self, eid: str, n: int, code: int, output: str = "") -> None:
        self.backend.write_log(eid, n, output)
        self.backend.exit(eid, n, code)

    def starts(self, eid: str, n: int) -> int:
        return sum(1 for s in self.backend.submits if (s.experiment_id, s.attempt) == (eid, n))

    def add_checkpoint(self, eid: str, name: str, age: float) -> None:
        self.backend.set_checkpoint(eid, f"/checkpoints/{eid}/{name}")

    def close(self) -> None:
        pass


class LocalDriver:
    """Moves LocalRunner attempts through a control directory that CONTROLLED reads."""

    def __init__(self, root: Path, gpus: int) -> None:
        self.ctl = root / "ctl"
        self.ctl.mkdir(parents=True)
        self.backend = LocalRunner(root / "runs", gpus, SystemClock())

    def command(self) -> tuple[str, ...]:
        return (sys.executable, "-c", CONTROLLED, str(self.ctl))

    def started(self, eid: str, n: int) -> None:
        wait_for(lambda: (self.ctl / f"{eid}-{n}.started").exists())

    def finish(self, eid: str, n: int, code: int, output: str = "") -> None:
        order = self.ctl / f"{eid}-{n}.json"
        tmp = order.with_suffix(".tmp")
        tmp.write_text(json.dumps({"code": code, "output": output}))
        os.replace(tmp, order)
        wait_for(lambda: self.backend.status(eid, n).phase == AttemptPhase.EXITED)

    def starts(self, eid: str, n: int) -> int:
        path = self.ctl / f"{eid}-{n}.started"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def add_checkpoint(self, eid: str, name: str, age: float) -> None:
        path = self.backend.checkpoint_dir(eid) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))

    def close(self) -> None:
        for launch_file in self.backend.root.glob("*/attempt-*/launch.json"):
            n = int(launch_file.parent.name.removeprefix("attempt-"))
            self.backend.stop(launch_file.parent.parent.name, n, timedelta(0))


Driver = FakeDriver | LocalDriver


@pytest.fixture(params=["fake", "local"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    drivers: list[Driver] = []

    def factory(gpus: int = 2) -> Driver:
        driver: Driver = FakeDriver(gpus) if request.param == "fake" else LocalDriver(tmp_path / str(len(drivers)), gpus)
        drivers.append(driver)
        return driver

    yield factory
    for driver in drivers:
        driver.close()


def launch(d: Driver, eid: str, attempt: int = 1, gpus: int = 0) -> AttemptLaunch:
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


def test_attempts_queue_for_gpus(make: Callable[..., Driver]) -> None:
    d = make(gpus=2)
    assert d.backend.submit(launch(d, "exp-a", gpus=1)).started
    assert d.backend.submit(launch(d, "exp-b", gpus=1)).started
    waiting = d.backend.submit(launch(d, "exp-c", gpus=1))
    assert not waiting.started
    assert waiting.reason == "waiting for 1 free GPUs (2 of 2 in use)"
    assert d.backend.status("exp-c", 1) is None  # nothing was created
    d.started("exp-a", 1)
    d.finish("exp-a", 1, 0)
    assert d.backend.submit(launch(d, "exp-c", gpus=1)).started
    d.started("exp-c", 1)
    assert status(d, "exp-c").phase == AttemptPhase.RUNNING


def test_check_fits(make: Callable[..., Driver]) -> None:
    d = make(gpus=2)
    too_big = launch(d, "exp-a", gpus=3)
    assert d.backend.check_fits(too_big.spec) == "needs 3 GPUs but this machine has 2 (set EXPBOT_LOCAL_GPUS)"
    assert d.backend.check_fits(launch(d, "exp-b", gpus=2).spec) is None
    assert not d.backend.submit(too_big).started
    assert d.backend.status("exp-a", 1) is None


def test_stop_ends_the_attempt(make: Callable[..., Driver]) -> None:
    d = make()
    d.backend.submit(launch(d, "exp-a"))
    d.started("exp-a", 1)
    d.backend.stop("exp-a", 1, timedelta(seconds=5))
    assert status(d, "exp-a").phase in (AttemptPhase.EXITED, AttemptPhase.LOST)
    d.backend.stop("exp-a", 1, timedelta(seconds=5))  # already gone: nothing happens
    d.backend.stop("exp-never", 1, timedelta(seconds=5))
    assert status(d, "exp-a").phase in (AttemptPhase.EXITED, AttemptPhase.LOST)


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
    d = make()
    d.backend.wait_for_change(0)  # forget changes so far
    threading.Timer(0.2, d.backend.wake, args=("exp-new",)).start()
    began = time.monotonic()
    changed = d.backend.wait_for_change(10)
    assert time.monotonic() - began < 5
    assert changed is None or changed == {"exp-new"}  # None: this backend names no changes at all
