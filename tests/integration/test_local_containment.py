"""Containment of local attempts, with real processes: nothing of attempt N outlives it, attempt N+1
never runs beside it, and ends are heard as they happen (a full data dir: test_local_full_disk.py).

Every test runs twice: with a cgroup per attempt (skipped, saying why, only where this machine
will not let expbot create one) and with the fallback (the shim as subreaper plus the token).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.local import procs
from adapters.local.runner import LocalRunner
from adapters.local.shim import token_pids
from core.model import State
from core.ports import AttemptPhase
from core.supervisor import Supervisor
from tests.integration.conftest import Store
from tests.integration.local_containment_helpers import (  # noqa: F401  (cgroups, make_runner, supervising: fixtures)
    ESCAPER, PY, cgroups, ended, experiment, launch, left_behind, make_runner, pids_in, record, status, stored,
    supervising, supervisor,
)
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize("how", ["setsid", "double-fork", "clean-env"])
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


# --- the benchmark ---------------------------------------------------------------------------
@pytest.mark.slow
def test_the_supervision_benchmark_s_smoke_mode(tmp_path: Path, cgroups: bool) -> None:
    env = os.environ | {"EXPBOT_LOCAL_CGROUPS": "on" if cgroups else "off"}
    run = subprocess.run([PY, "benchmarks/local_supervision.py", "--smoke"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"kill -> next attempt started: +p50 +[\d.]+ ms +p99 +[\d.]+ ms", run.stdout), run.stdout


def test_a_lost_attempt_leaves_no_cgroup_once_its_experiment_ends(make_runner: Callable[..., LocalRunner],
                                                                    cgroups: bool) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", (PY, "-c", "import time; time.sleep(60)")))
    rec = record(runner, "exp-a")
    wait_for(lambda: status(runner, "exp-a").phase == AttemptPhase.RUNNING, what="running")
    os.killpg(rec["pgid"], signal.SIGKILL)  # the whole group at once, as a lost machine: no shim cleanup
    wait_for(lambda: status(runner, "exp-a").phase == AttemptPhase.LOST, what="the loss to be seen")
    runner.release("exp-a", retry_after=0.5)
    if cgroups:
        wait_for(lambda: not Path(rec["cgroup"]).exists(), what="the attempt's cgroup to be removed")
    else:
        assert rec["cgroup"] is None
