"""Containment of local attempts, with real processes: nothing of attempt N outlives it, attempt N+1
never runs beside it, a full data dir starts nothing untracked, and ends are heard as they happen.

Every test runs twice: with a cgroup per attempt (skipped, saying why, only where this machine
will not let expbot create one) and with the fallback (the shim as subreaper plus the token).
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.local import procs
from adapters.local.containment import Containment
from adapters.local.runner import LocalRunner
from adapters.local.shim import token_pids
from core.model import State
from core.policy import Backoff
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus
from core.spec import ExperimentSpec
from core.supervisor import Supervisor
from tests.integration.conftest import Store, new_experiment
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
# A child escapes the process group (setsid) or is orphaned by a double fork, ignores SIGTERM and
# sleeps; the main process records pids, then exits with the code written into the go file.
ESCAPER = r"""
import os, pathlib, signal, sys, time
how, pid_file, go = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
def record():
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
if os.fork() == 0:
    if how == "double-fork" and os.fork() != 0:
        os._exit(0)  # the middle process: its child is an orphan now
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record()
    time.sleep(300)
    os._exit(0)
record()
while not go.exists():
    time.sleep(0.02)
sys.exit(int(go.read_text() or 0))
"""
# Trains in 0.05 s steps with a helper child (a data loader, say); every write is logged with its
# time and attempt. A later attempt first logs which processes of the previous one are still alive.
TRAINER = r"""
import json, os, pathlib, sys, time
out, steps = pathlib.Path(sys.argv[1]), int(sys.argv[2])
n, ck = int(os.environ["EXPBOT_ATTEMPT"]), pathlib.Path(os.environ["EXPBOT_CHECKPOINT_DIR"])
def note(text):
    with open(out / "writes.log", "a") as f:
        f.write(f"{time.time():.6f} attempt={n} {text}\n")
def alive(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False
if n > 1:
    before = (out / f"pids-{n - 1}").read_text().split()
    note("alive-at-start [" + ",".join(p for p in before if alive(int(p))) + "]")
resume = os.environ["EXPBOT_RESUME_FROM"]
step = json.loads(pathlib.Path(resume).read_text())["step"] if resume else 0
note(f"resumed {step}")
if os.fork() == 0:
    with open(out / f"pids-{n}", "a") as f:
        f.write(f"{os.getpid()}\n")
    while True:
        note("helper")
        time.sleep(0.05)
with open(out / f"pids-{n}", "a") as f:
    f.write(f"{os.getpid()}\n")
while step < steps:
    step += 1
    time.sleep(0.05)
    tmp = ck / f".ckpt-{step:06d}.tmp"
    tmp.write_text(json.dumps({"step": step}))
    os.replace(tmp, ck / f"ckpt-{step:06d}.json")
    note(f"checkpoint {step}")
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


def test_the_mechanism_is_recorded(make_runner: Callable[..., LocalRunner], cgroups: bool) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", (PY, "-c", "import time; time.sleep(60)")))
    rec, info = record(runner, "exp-a"), runner.process_info("exp-a", 1)
    assert info is not None and info["running"] and info["pid"] == info["pgid"] == rec["pid"]
    assert re.fullmatch(r"[0-9a-f]{32}", rec["token"]) and rec["pid"] in token_pids([rec["token"]])
    if cgroups:
        assert (rec["mechanism"], info["mechanism"]) == ("cgroup", "cgroup") and info["cgroup"] == rec["cgroup"]
        # The shim moves itself in first thing, before it starts the command.
        wait_for(lambda: str(rec["pid"]) in Path(rec["cgroup"], "cgroup.procs").read_text().split(),
                 what="the shim to join its cgroup")
    else:
        assert (rec["mechanism"], rec["cgroup"]) == ("subreaper", None)
    runner.stop("exp-a", 1, timedelta(seconds=5))
    assert runner.process_info("exp-a", 1)["running"] is False  # type: ignore[index]
    wait_for(lambda: rec["cgroup"] is None or not Path(rec["cgroup"]).exists(), what="the cgroup to be removed")


@pytest.mark.parametrize("how", ["setsid", "double-fork"])
@pytest.mark.parametrize("end", ["stop", "exit 0", "exit 3"])
def test_nothing_escapes_the_end_of_its_attempt(make_runner: Callable[..., LocalRunner], tmp_path: Path,
                                                how: str, end: str) -> None:
    runner = make_runner()
    pid_file, go = tmp_path / "pids", tmp_path / "go"
    runner.submit(launch("exp-a", (PY, "-c", ESCAPER, how, str(pid_file), str(go))))
    pids = pids_in(pid_file, 2)
    token = record(runner, "exp-a").get("token", "")
    if end == "stop":
        runner.stop("exp-a", 1, timedelta(seconds=0.5))  # the escaped one ignores SIGTERM
        assert left_behind(pids, token) == []  # stop returns once nothing of the attempt is left
        assert status(runner, "exp-a").phase == AttemptPhase.EXITED
    else:
        go.write_text(end.split()[1])
        assert ended(runner, "exp-a").exit_code == int(end.split()[1])
        wait_for(lambda: left_behind(pids, token) == [], what="the escaped process to die with its attempt")


def test_stop_finds_the_strays_of_a_dead_shim(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner()
    pid_file, go = tmp_path / "pids", tmp_path / "go"
    runner.submit(launch("exp-a", (PY, "-c", ESCAPER, "setsid", str(pid_file), str(go))))
    pids = pids_in(pid_file, 2)
    rec = record(runner, "exp-a")
    os.kill(rec["pid"], signal.SIGKILL)  # the wrapper dies; its command and the escaped child live on
    stops = [threading.Thread(target=runner.stop, args=("exp-a", 1, timedelta(seconds=0.5))) for _ in range(2)]
    for t in stops:
        t.start()
    while any(t.is_alive() for t in stops):  # status() beside two stops at once must not break any
        assert status(runner, "exp-a").phase in (AttemptPhase.RUNNING, AttemptPhase.EXITED, AttemptPhase.LOST)
        time.sleep(0.01)
    assert left_behind(pids, rec.get("token", "")) == []
    runner.stop("exp-a", 1, timedelta(seconds=0.5))  # again: nothing left to do, no error
    assert status(runner, "exp-a").phase in (AttemptPhase.EXITED, AttemptPhase.LOST)


@pytest.mark.parametrize("watch", ["pidfd", "polling"])
def test_an_adopted_attempt_s_end_is_heard_at_once(make_runner: Callable[..., LocalRunner], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, watch: str) -> None:
    first = make_runner()
    go = tmp_path / "go"
    first.submit(launch("exp-a", (PY, "-c", ESCAPER, "setsid", str(tmp_path / "pids"), str(go))))
    pids_in(tmp_path / "pids", 2)
    if watch == "polling":  # an old kernel or Python
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    second = make_runner()  # as after a restart of expbot: it did not start this attempt
    assert status(second, "exp-a").phase == AttemptPhase.RUNNING
    second.wait_for_change(0)  # forget what happened so far
    threading.Timer(0.2, go.write_text, args=("0",)).start()
    began = time.monotonic()
    while time.monotonic() - began < 30:  # polling names it every little while, ended or not
        if "exp-a" in (second.wait_for_change(30) or set()) and status(second, "exp-a").phase != AttemptPhase.RUNNING:
            break
    assert time.monotonic() - began < 10  # heard, not found by a pass 30 s later
    assert status(second, "exp-a").exit_code == 0


# --- through the real supervisor -------------------------------------------------------------
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


def test_a_killed_shim_s_trainer_is_gone_before_the_next_attempt(
        make_runner: Callable[..., LocalRunner], sqlite_store: Store, supervising: Callable[[Supervisor], None],
        tmp_path: Path) -> None:
    runner = make_runner()
    eid = experiment(sqlite_store, "contained", (PY, "-c", TRAINER, str(tmp_path), "40"),
                     checkpoint_glob="ckpt-*.json", max_restarts=0)
    supervising(supervisor(sqlite_store, runner))
    pids_in(tmp_path / "pids-1", 2)  # the trainer and its helper
    wait_for(lambda: len(list(runner.checkpoint_dir(eid).glob("ckpt-*.json"))) >= 3, what="three checkpoints")
    os.kill(record(runner, eid)["pid"], signal.SIGKILL)  # the shim only: what `pgrep -f train` finds first

    final = wait_for(lambda: (e := stored(sqlite_store, eid)).state in (State.SUCCEEDED, State.FAILED) and e,
                     60, what="the experiment to end")
    assert final.state == State.SUCCEEDED and len(final.attempts) == 2, final.state_reason
    lines = [line.split(" ", 2) for line in (tmp_path / "writes.log").read_text().splitlines()]
    second_began = min(float(t) for t, who, _ in lines if who == "attempt=2")
    assert [what for _, who, what in lines if who == "attempt=2"][0] == "alive-at-start []"
    assert max(float(t) for t, who, _ in lines if who == "attempt=1") < second_began  # none wrote after
    last = max(int(what.split()[1]) for _, who, what in lines if who == "attempt=1" and what.startswith("checkpoint"))
    assert f"resumed {last}" in [what for _, who, what in lines if who == "attempt=2"] and last >= 3
    assert final.attempts[1].resumed_from == str(runner.checkpoint_dir(eid) / f"ckpt-{last:06d}.json")
    everyone = [int(p) for n in (1, 2) for p in (tmp_path / f"pids-{n}").read_text().split()]
    wait_for(lambda: not any(procs.is_alive(p, None) for p in everyone), what="every process to be gone")


# --- a full data dir -------------------------------------------------------------------------
class FullDisk:
    """A tiny tmpfs for the runner's root that tests fill and free; an injected ENOSPC where mounting is not allowed."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path, self.monkeypatch, self.full = path, monkeypatch, False
        path.mkdir()
        try:
            self.mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                                          capture_output=True).returncode == 0
        except OSError:  # no mount command
            self.mounted = False
        if not self.mounted:
            import adapters.local.runner as runner_module
            import adapters.local.tracker as tracker_module
            for module, name in ((runner_module, "write_json_atomic"), (tracker_module, "create_json_once")):
                self._inject(module, name)

    def _inject(self, module: object, name: str) -> None:
        real = getattr(module, name)

        def write(*args: object, **kwargs: object) -> object:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args, **kwargs)

        self.monkeypatch.setattr(module, name, write)

    def fill(self, exit_json_of: Path | None = None) -> None:
        self.full = True
        if self.mounted:
            with open(self.path / "filler", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
        elif exit_json_of is not None:  # the shim writes exit.json itself: make that fail too
            (exit_json_of / "exit.json").mkdir()
            (exit_json_of / "exit.json" / "x").touch()

    def free(self) -> None:
        self.full = False
        (self.path / "filler").unlink(missing_ok=True)

    def close(self) -> None:
        stop_everything(LocalRunner(self.path / "runs", 0, SystemClock()))  # before the files disappear
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    disk = FullDisk(tmp_path / "disk", monkeypatch)
    yield disk
    disk.close()


def running_with(marker: str) -> list[int]:
    """Processes whose command line mentions marker (a spawned shim shows it as soon as Popen returns)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_a_full_data_dir_starts_nothing_and_says_so(
        make_runner: Callable[..., LocalRunner], sqlite_store: Store, full_disk: FullDisk, tmp_path: Path) -> None:
    runner = make_runner(full_disk.path / "runs")
    starts = tmp_path / "starts"
    code = "import sys, time; open(sys.argv[1], 'a').write('started\\n'); time.sleep(0.3)"
    eid = experiment(sqlite_store, "on-full-disk", (PY, "-c", code, str(starts)), max_restarts=0)
    runner.root.mkdir(parents=True)
    full_disk.fill()
    sup = supervisor(sqlite_store, runner)
    for _ in range(5):  # every pass tries again
        sup.reconcile_once()
        assert running_with(str(starts)) == []  # not even for a moment: nothing started untracked
    exp = stored(sqlite_store, eid)
    assert exp.state == State.QUEUED and exp.attempts == []
    assert exp.state_reason == f"cannot write to EXPBOT_DATA_DIR ({runner.root}): no space left on device"

    full_disk.free()

    def succeeded():  # type: ignore[no-untyped-def]
        sup.reconcile_once()
        return (e := stored(sqlite_store, eid)).state == State.SUCCEEDED and e

    final = wait_for(succeeded, 30, what="the experiment to succeed once space is back")
    assert len(final.attempts) == 1 and starts.read_text() == "started\n"  # started exactly once


def test_an_exit_the_disk_cannot_take_is_still_known(
        make_runner: Callable[..., LocalRunner], full_disk: FullDisk, tmp_path: Path) -> None:
    runner = make_runner(full_disk.path / "runs")
    go, ready = tmp_path / "go", tmp_path / "ready"
    code = ("import os, sys, time; open(sys.argv[1], 'w').close()\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.02)\nsys.exit(3)")
    assert runner.submit(launch("exp-a", (PY, "-c", code, str(ready), str(go)))).started
    wait_for(ready.exists)
    full_disk.fill(exit_json_of=runner.attempt_dir("exp-a", 1))
    go.touch()
    st = ended(runner, "exp-a")
    assert (st.phase, st.exit_code, st.infra) == (AttemptPhase.EXITED, 3, False)  # not "process vanished"
    assert st.reason == f"cannot write to EXPBOT_DATA_DIR ({runner.root}): no space left on device"


# --- the benchmark ---------------------------------------------------------------------------
@pytest.mark.slow
def test_the_supervision_benchmark_s_smoke_mode(tmp_path: Path, cgroups: bool) -> None:
    env = os.environ | {"EXPBOT_LOCAL_CGROUPS": "on" if cgroups else "off"}
    run = subprocess.run([PY, "benchmarks/local_supervision.py", "--smoke"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"kill -> next attempt started: +p50 +[\d.]+ ms +p99 +[\d.]+ ms", run.stdout), run.stdout
