"""Shared by the local containment tests: runners in both containment modes, workloads, the supervisor."""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.local import procs
from adapters.local.containment import Containment
from adapters.local.runner import LocalRunner
from adapters.local.shim import token_pids
from core.policy import Backoff
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus
from core.spec import ExperimentSpec
from core.supervisor import Supervisor
from tests.integration.conftest import Store, new_experiment
from tests.polling import wait_for

PY = sys.executable
# A child escapes the process group (setsid) or is orphaned by a double fork (and may also drop its
# environment), ignores SIGTERM and sleeps; the main process records pids, then exits with the code
# written into the go file.
ESCAPER = r"""
import os, pathlib, signal, sys, time
how, pid_file, go = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
def record():
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
if os.fork() == 0:
    if how != "setsid" and os.fork() != 0:
        os._exit(0)  # the middle process: its child is an orphan now
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record()
    if how == "clean-env":  # no token either: only the cgroup or the subreaper shim still knows it
        os.execve("/bin/sleep", ["sleep", "300"], {})
    time.sleep(300)
    os._exit(0)
record()
while not go.exists():
    time.sleep(0.02)
sys.exit(int(go.read_text() or 0))
"""
@pytest.fixture(params=["cgroup", "subreaper"])
def cgroups(request: pytest.FixtureRequest) -> bool:
    """Whether the runner puts each attempt in a cgroup of its own (else: subreaper plus token)."""
    if request.param == "cgroup":
        probe = Containment(True)
        if probe.base() is None:
            pytest.skip(f"cgroups cannot be created here: {probe.why_not}")
    return request.param == "cgroup"


@pytest.fixture
def make_runner(tmp_path: Path, cgroups: bool) -> Iterator[Callable[..., LocalRunner]]:
    runners: list[LocalRunner] = []

    def factory(root: Path | None = None) -> LocalRunner:
        runners.append(LocalRunner(root or tmp_path / "runs", 0, SystemClock(), cgroups=cgroups))
        return runners[-1]

    yield factory
    for runner in runners:
        stop_everything(runner)


def stop_everything(runner: LocalRunner) -> None:
    """Leave no process behind."""
    for launch_file in runner.root.glob("*/attempt-*/launch.json"):
        runner.stop(launch_file.parent.parent.name, int(launch_file.parent.name.split("-")[1]), timedelta(0))


def launch(eid: str, command: tuple[str, ...], attempt: int = 1) -> AttemptLaunch:
    spec = ExperimentSpec(name=f"name-{eid}", command=command, image="local")
    return AttemptLaunch(eid, f"name-{eid}", attempt, spec, "alice", None, timedelta(hours=1))


def record(runner: LocalRunner, eid: str, n: int = 1) -> dict:
    return json.loads((runner.attempt_dir(eid, n) / "launch.json").read_text())


def status(runner: LocalRunner, eid: str, n: int = 1) -> AttemptStatus:
    found = runner.status(eid, n)
    assert found is not None
    return found


def ended(runner: LocalRunner, eid: str, n: int = 1, timeout: float = 15.0) -> AttemptStatus:
    return wait_for(lambda: (s := status(runner, eid, n)).phase != AttemptPhase.RUNNING and s, timeout,  # type: ignore[return-value]
                    what=f"{eid} attempt {n} to end")


def left_behind(pids: list[int], token: str) -> list[int]:
    """Processes of the attempt still alive: from the pids it wrote, and whoever carries its token."""
    return sorted({p for p in pids if procs.is_alive(p, None)} | set(token_pids([token])))


def pids_in(path: Path, count: int) -> list[int]:
    def written() -> list[int]:
        found = path.read_text().split() if path.exists() else []
        return [int(p) for p in found] if len(found) >= count else []

    return wait_for(written, what=f"{count} pids in {path.name}")


def supervisor(store: Store, runner: LocalRunner) -> Supervisor:
    return Supervisor(store.new_uow, runner, SystemClock(), stop_grace=timedelta(seconds=2),
                      backoff=Backoff(base=timedelta(0), cap=timedelta(0)))


def experiment(store: Store, eid_name: str, command: tuple[str, ...], **spec: object) -> str:
    exp = new_experiment(eid_name, command=command, image="local", **spec)
    store.save(exp)
    return exp.id


def stored(store: Store, experiment_id: str):  # type: ignore[no-untyped-def]
    with store.new_uow() as uow:
        return uow.experiments.get(experiment_id)


@pytest.fixture
def supervising() -> Iterator[Callable[[Supervisor], None]]:
    stop, threads = threading.Event(), []

    def start(sup: Supervisor) -> None:
        threads.append(threading.Thread(target=sup.run, args=(stop, 0.5), daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for t in threads:
        t.join(timeout=30)
