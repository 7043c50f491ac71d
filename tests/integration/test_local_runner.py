"""LocalRunner with real processes: env contract, GPUs, signals, restarts of expbot, the toy workload."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.local import procs
from adapters.local.runner import LocalRunner
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus
from core.spec import ExperimentSpec
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / "examples" / "train_toy.py")
PY = sys.executable
SLEEP = (PY, "-c", "import time; time.sleep(60)")
# Dumps its environment and cwd to argv[1], then waits until argv[2] exists (if given).
DUMP_ENV = r"""
import json, os, pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text(json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}))
while len(sys.argv) > 2 and not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
"""




@pytest.fixture
def make_runner(tmp_path: Path) -> Iterator[Callable[..., LocalRunner]]:
    runners: list[LocalRunner] = []

    def factory(gpus: int = 0) -> LocalRunner:
        runners.append(LocalRunner(tmp_path / "runs", gpus, SystemClock()))
        return runners[-1]

    yield factory
    for launch_file in (tmp_path / "runs").glob("*/attempt-*/launch.json"):  # leave no process behind
        n = int(launch_file.parent.name.removeprefix("attempt-"))
        runners[0].stop(launch_file.parent.parent.name, n, timedelta(0))


def launch(eid: str, command: tuple[str, ...], attempt: int = 1, gpus: int = 0,
           resume_from: str | None = None, env: dict[str, str] | None = None) -> AttemptLaunch:
    spec = ExperimentSpec(name=f"name-{eid}", command=command, image="local", gpus=gpus, env=env or {})
    return AttemptLaunch(eid, f"name-{eid}", attempt, spec, "alice", resume_from, timedelta(hours=1))


def status(runner: LocalRunner, eid: str, n: int = 1) -> AttemptStatus:
    found = runner.status(eid, n)
    assert found is not None
    return found


def ended(runner: LocalRunner, eid: str, n: int = 1, timeout: float = 10.0) -> AttemptStatus:
    """Wait until the attempt is no longer running; its status."""
    return wait_for(lambda: (s := status(runner, eid, n)).phase != AttemptPhase.RUNNING and s, timeout)  # type: ignore[return-value]


def pgid(runner: LocalRunner, eid: str, n: int = 1) -> int:
    return json.loads((runner.attempt_dir(eid, n) / "launch.json").read_text())["pgid"]


def test_env_contract(make_runner: Callable[..., LocalRunner], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    runner = make_runner(gpus=1)
    monkeypatch.setenv("FROM_PARENT", "inherited")
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    runner.submit(launch("exp-a", (PY, "-c", DUMP_ENV, str(out_a)), attempt=2, gpus=1,
                         resume_from="/ckpt/ckpt-1.json", env={"LR": "0.1"}))
    runner.submit(launch("exp-b", (PY, "-c", DUMP_ENV, str(out_b))))
    assert ended(runner, "exp-a", 2).exit_code == 0 and ended(runner, "exp-b").exit_code == 0
    a = json.loads(out_a.read_text())
    env = a["env"]
    assert a["cwd"] == os.getcwd()
    assert env["FROM_PARENT"] == "inherited" and env["LR"] == "0.1"
    assert env["EXPBOT_EXPERIMENT"] == "name-exp-a" and env["EXPBOT_EXPERIMENT_ID"] == "exp-a"
    assert env["EXPBOT_ATTEMPT"] == "2"
    assert env["EXPBOT_CHECKPOINT_DIR"] == str(runner.checkpoint_dir("exp-a"))
    assert os.path.isabs(env["EXPBOT_CHECKPOINT_DIR"]) and os.path.isdir(env["EXPBOT_CHECKPOINT_DIR"])
    assert env["EXPBOT_RESUME_FROM"] == "/ckpt/ckpt-1.json"
    assert env["EXPBOT_HEARTBEAT_FILE"] == str(runner.attempt_dir("exp-a", 2) / "heartbeat")
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["PYTHONUNBUFFERED"] == "1"
    b = json.loads(out_b.read_text())["env"]
    assert b["EXPBOT_RESUME_FROM"] == "" and b["CUDA_VISIBLE_DEVICES"] == "" and b["EXPBOT_ATTEMPT"] == "1"


def test_concurrent_attempts_get_distinct_gpus(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner(gpus=4)
    release = tmp_path / "release"
    outs = {eid: tmp_path / f"{eid}.json" for eid in ("exp-a", "exp-b")}
    for eid, out in outs.items():
        assert runner.submit(launch(eid, (PY, "-c", DUMP_ENV, str(out), str(release)), gpus=2)).started
    waiting = runner.submit(launch("exp-c", SLEEP, gpus=1))
    assert (waiting.started, waiting.reason) == (False, "waiting for 1 free GPU (4 of 4 in use)")
    wait_for(lambda: all(out.exists() for out in outs.values()))
    got = [set(json.loads(out.read_text())["env"]["CUDA_VISIBLE_DEVICES"].split(",")) for out in outs.values()]
    assert got[0].isdisjoint(got[1]) and got[0] | got[1] == {"0", "1", "2", "3"}
    release.touch()
    assert ended(runner, "exp-a").exit_code == 0 and ended(runner, "exp-b").exit_code == 0
    assert runner.submit(launch("exp-c", SLEEP, gpus=1)).started


def test_check_fits_says_how_to_give_it_more_gpus(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner(gpus=2)
    assert runner.check_fits(launch("exp-a", SLEEP, gpus=3).spec) == "needs 3 GPUs but this machine has 2 (set EXPBOT_LOCAL_GPUS)"
    assert make_runner(gpus=0).check_fits(launch("exp-b", SLEEP, gpus=1).spec).startswith("needs 1 GPU but")


def test_output_log_has_stdout_and_stderr(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    runner.submit(launch("exp-a", (PY, "-c", code)))
    assert ended(runner, "exp-a").exit_code == 0
    log = runner.logs("exp-a", 1)
    assert "to stdout\n" in log and "to stderr\n" in log
    assert (runner.attempt_dir("exp-a", 1) / "output.log").read_text() == log


def test_logs_tail_of_a_big_log(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", (PY, "-c", "for i in range(200000): print(f'line {i:07d}')")))
    assert ended(runner, "exp-a").exit_code == 0
    assert runner.logs("exp-a", 1, tail_lines=2) == "line 0199998\nline 0199999\n"
    assert len(runner.logs("exp-a", 1, tail_lines=200000).splitlines()) < 200000  # tails read ~1 MiB


def test_killing_the_whole_group_is_lost(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", SLEEP))
    assert status(runner, "exp-a").phase == AttemptPhase.RUNNING
    os.killpg(pgid(runner, "exp-a"), signal.SIGKILL)  # what a lost node looks like
    st = ended(runner, "exp-a")
    assert (st.phase, st.infra, st.reason, st.exit_code) == (AttemptPhase.LOST, True, "process vanished", None)
    assert status(make_runner(), "exp-a").phase == AttemptPhase.LOST


def test_killing_only_the_command_exits_137(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner()
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    runner.submit(launch("exp-a", (PY, "-c", code)))
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text()))  # type: ignore[arg-type]
    os.kill(child, signal.SIGKILL)
    st = ended(runner, "exp-a")
    assert (st.phase, st.exit_code, st.reason) == (AttemptPhase.EXITED, 137, "terminated by SIGKILL")


def test_leftover_processes_die_with_the_command(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner()
    pid_file = tmp_path / "background.pid"
    runner.submit(launch("exp-a", ("sh", "-c", f"sleep 60 & echo $! > {pid_file}")))
    assert ended(runner, "exp-a").exit_code == 0
    background = int(pid_file.read_text())
    wait_for(lambda: not procs.is_alive(background, None), timeout=5)


def test_stop_terminates_politely(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner()
    ready = tmp_path / "ready"
    runner.submit(launch("exp-a", (PY, "-c", f"import time; open({str(ready)!r}, 'w').close(); time.sleep(60)")))
    wait_for(ready.exists)
    runner.stop("exp-a", 1, timedelta(seconds=5))
    st = status(runner, "exp-a")
    assert (st.phase, st.exit_code, st.reason) == (AttemptPhase.EXITED, 143, "terminated by SIGTERM")


def test_stop_right_after_submit_is_recorded(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    for eid in ("exp-a", "exp-b", "exp-c"):  # the shim may still be starting: never LOST
        runner.submit(launch(eid, SLEEP))
        runner.stop(eid, 1, timedelta(seconds=5))
        st = status(runner, eid)
        assert (st.phase, st.exit_code) == (AttemptPhase.EXITED, 143)
        assert st.reason.startswith("terminated by SIGTERM")


def test_stop_escalates_to_sigkill(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner()
    ready = tmp_path / "ready"
    code = (f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"open({str(ready)!r}, 'w').close(); time.sleep(60)")
    runner.submit(launch("exp-a", (PY, "-c", code)))
    wait_for(ready.exists)
    began = time.monotonic()
    runner.stop("exp-a", 1, timedelta(seconds=0.5))
    assert 0.5 <= time.monotonic() - began < 5
    st = status(runner, "exp-a")
    assert (st.phase, st.exit_code) == (AttemptPhase.EXITED, 137) and "SIGKILL" in st.reason


def test_stop_from_another_process(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", SLEEP))
    script = ("import sys; from datetime import timedelta; from pathlib import Path; "
              "from adapters.clock import SystemClock; from adapters.local.runner import LocalRunner; "
              "LocalRunner(Path(sys.argv[1]), 0, SystemClock()).stop('exp-a', 1, timedelta(seconds=5))")
    subprocess.run([PY, "-c", script, str(runner.root)], cwd=REPO, check=True, timeout=30)
    assert status(runner, "exp-a").exit_code == 143


def test_a_new_runner_sees_earlier_attempts(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    first = make_runner(gpus=1)
    release = tmp_path / "release"
    first.submit(launch("exp-run", (PY, "-c", DUMP_ENV, str(tmp_path / "env.json"), str(release)), gpus=1))
    first.submit(launch("exp-done", (PY, "-c", "raise SystemExit(4)")))
    first.submit(launch("exp-lost", SLEEP))
    ended(first, "exp-done")
    second = make_runner(gpus=1)  # as after an expbot restart
    assert status(second, "exp-run").phase == AttemptPhase.RUNNING
    assert (status(second, "exp-done").phase, status(second, "exp-done").exit_code) == (AttemptPhase.EXITED, 4)
    assert status(second, "exp-lost").phase == AttemptPhase.RUNNING
    busy = second.submit(launch("exp-other", SLEEP, gpus=1))
    assert (busy.started, busy.reason) == (False, "waiting for 1 free GPU (1 of 1 in use)")
    os.killpg(pgid(second, "exp-lost"), signal.SIGKILL)
    assert ended(second, "exp-lost").phase == AttemptPhase.LOST
    release.touch()
    assert ended(second, "exp-run").exit_code == 0
    assert second.submit(launch("exp-other", SLEEP, gpus=1)).started


def test_command_that_cannot_start(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", ("no-such-command-expbot", "--flag")))
    st = ended(runner, "exp-a")
    assert (st.phase, st.exit_code, st.reason) == (AttemptPhase.EXITED, 127, "command not found: no-such-command-expbot")
    assert "command not found: no-such-command-expbot" in runner.logs("exp-a", 1)
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    runner.submit(launch("exp-b", (str(script),)))
    st = ended(runner, "exp-b")
    assert (st.exit_code, st.reason) == (126, f"permission denied: {script}")


def test_latest_checkpoint_skips_temporary_and_hidden_files(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    ckdir = runner.checkpoint_dir("exp-a")
    (ckdir / "step-1").mkdir(parents=True)
    (ckdir / "step-1" / "model.pt").write_text("1")
    time.sleep(0.01)
    (ckdir / "model.pt.tmp").write_text("being written")
    (ckdir / ".partial.pt").write_text("hidden")
    (ckdir / "step-2").mkdir()
    assert runner.latest_checkpoint("exp-a", "**/*.pt") == str(ckdir / "step-1" / "model.pt")
    assert runner.latest_checkpoint("exp-a", "*") is None  # directories are not checkpoint files
    assert runner.latest_checkpoint("exp-a", "../*") is None  # cannot look outside the directory
    with pytest.raises(ValueError):
        runner.latest_checkpoint("exp-a", "/etc/*")


def test_toy_runs_to_completion(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", (PY, TOY, "--steps", "30", "--checkpoint-every", "5", "--step-seconds", "0")))
    st = ended(runner, "exp-a")
    assert st.exit_code == 0 and st.last_progress_at is not None
    log = runner.logs("exp-a", 1)
    assert log.startswith("starting fresh\n") and re.search(r"final step 30 value \d+\n$", log)
    names = sorted(p.name for p in runner.checkpoint_dir("exp-a").iterdir())
    assert names == ["ckpt-000020.json", "ckpt-000025.json", "ckpt-000030.json"]  # newest 3 kept
    assert (runner.attempt_dir("exp-a", 1) / "heartbeat").exists()


def test_toy_fails_at_the_step_asked(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", (PY, TOY, "--steps", "30", "--step-seconds", "0",
                                   "--fail-at-step", "12", "--exit-code", "3")))
    assert ended(runner, "exp-a").exit_code == 3
    assert runner.latest_checkpoint("exp-a", "ckpt-*.json").endswith("ckpt-000010.json")  # type: ignore[union-attr]


def test_toy_saves_a_checkpoint_on_sigterm(make_runner: Callable[..., LocalRunner]) -> None:
    runner = make_runner()
    runner.submit(launch("exp-a", (PY, TOY, "--steps", "500", "--checkpoint-every", "1000", "--step-seconds", "0.01")))
    wait_for(lambda: "step 50/" in runner.logs("exp-a", 1))
    runner.stop("exp-a", 1, timedelta(seconds=5))
    assert status(runner, "exp-a").exit_code == 143
    assert "checkpoint saved" in runner.logs("exp-a", 1)
    assert runner.latest_checkpoint("exp-a", "ckpt-*.json") is not None


def test_toy_resumes_after_losing_its_process(make_runner: Callable[..., LocalRunner], tmp_path: Path) -> None:
    runner = make_runner()
    args = ("--steps", "40", "--checkpoint-every", "5")
    reference = subprocess.run(
        [PY, TOY, *args, "--step-seconds", "0"], capture_output=True, text=True, check=True, timeout=30,
        env={**os.environ, "EXPBOT_CHECKPOINT_DIR": str(tmp_path / "reference"), "EXPBOT_RESUME_FROM": ""},
    ).stdout.splitlines()[-1]
    command = (PY, TOY, *args, "--step-seconds", "0.1")  # 4 s: still running when the kill comes
    runner.submit(launch("exp-a", command))
    wait_for(lambda: runner.latest_checkpoint("exp-a", "ckpt-*.json"))
    os.killpg(pgid(runner, "exp-a"), signal.SIGKILL)
    assert ended(runner, "exp-a").phase == AttemptPhase.LOST
    resume = runner.latest_checkpoint("exp-a", "ckpt-*.json")
    assert resume is not None
    runner.submit(launch("exp-a", command, attempt=2, resume_from=resume))
    assert ended(runner, "exp-a", 2).exit_code == 0
    log = runner.logs("exp-a", 2)
    resumed = re.search(r"^resumed from step (\d+)$", log, re.MULTILINE)
    assert resumed and int(resumed.group(1)) > 0
    assert f"ckpt-{int(resumed.group(1)):06d}.json" in resume
    assert log.splitlines()[-1] == reference and reference.startswith("final step 40 value ")
