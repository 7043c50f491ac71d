"""LocalRunner with --nodes N: real rank processes, their rendezvous and GPUs, one rank's end ending all."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.local import procs
from adapters.local.runner import LocalRunner
from bot.render import process_text
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus
from core.spec import ExperimentSpec
from tests.polling import wait_for

PY = sys.executable
# Each rank writes its environment to <argv[1]>/rank-<NODE_RANK>.json, then does what argv[2] says:
# "wait" (until argv[3] exists), "fail-1" (rank 1 exits 3, the others wait) or "ok".
RANK = r"""
import json, os, pathlib, sys, time
rank = os.environ["NODE_RANK"]
pathlib.Path(sys.argv[1], f"rank-{rank}.json").write_text(json.dumps({"env": dict(os.environ), "pid": os.getpid()}))
if sys.argv[2] == "fail-1" and rank == "1":
    while len(list(pathlib.Path(sys.argv[1]).glob("rank-*.json"))) < int(os.environ["NNODES"]):
        time.sleep(0.01)
    sys.exit(3)
while sys.argv[2] != "ok" and not os.path.exists(sys.argv[-1]):
    time.sleep(0.01)
"""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[LocalRunner]:
    local = LocalRunner(tmp_path / "runs", 4, SystemClock())
    yield local
    for launch_file in (tmp_path / "runs").glob("*/attempt-*/launch.json"):  # leave no process behind
        local.stop(launch_file.parent.parent.name, int(launch_file.parent.name.removeprefix("attempt-")), timedelta(0))


def gang(eid: str, out: Path, mode: str, nodes: int = 2, gpus: int = 2, attempt: int = 1) -> AttemptLaunch:
    out.mkdir(exist_ok=True)
    spec = ExperimentSpec(name=eid, command=(PY, "-c", RANK, str(out), mode, str(out / "go")), image="local",
                          gpus=gpus, nodes=nodes, env={"MASTER_ADDR": "user-cannot-fake-it"})
    return AttemptLaunch(eid, eid, attempt, spec, "ana", None, timedelta(hours=1))


def _read_all(files: list[Path]) -> list[dict] | None:
    try:
        return [json.loads(f.read_text()) for f in files]
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or being written
        return None


def ranks(out: Path, nodes: int) -> list[dict]:
    files = [out / f"rank-{r}.json" for r in range(nodes)]
    return wait_for(lambda: _read_all(files), 20, f"{nodes} ranks started")


def ended(runner: LocalRunner, eid: str) -> AttemptStatus:
    return wait_for(lambda: (s := runner.status(eid, 1)) and s.phase == AttemptPhase.EXITED and s, 20, "the end")


def test_every_rank_gets_the_rendezvous_and_its_own_gpus(runner: LocalRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert runner.submit(gang("g1", out, "wait")).started
    seen = ranks(out, 2)
    envs = [r["env"] for r in seen]
    assert [e["NODE_RANK"] for e in envs] == ["0", "1"]
    assert {e["MASTER_ADDR"] for e in envs} == {"127.0.0.1"} and len({e["MASTER_PORT"] for e in envs}) == 1
    assert {(e["NNODES"], e["NPROC_PER_NODE"], e["WORLD_SIZE"], e["PET_NNODES"]) for e in envs} == {("2", "2", "4", "2")}
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1", "2,3"]  # the 4 GPUs split, none shared
    assert {e["EXPBOT_ATTEMPT"] for e in envs} == {"1"}
    where = runner.process_info("g1", 1)
    assert (where["nodes"], str(where["master_port"])) == (2, envs[0]["MASTER_PORT"])  # what `expbot status` shows
    assert f"2 ranks meeting at port {where['master_port']}" in process_text(where)
    # Each rank leads its own process group; all GPUs are taken: a second gang waits.
    assert [os.getpgid(r["pid"]) for r in seen] == [r["pid"] for r in seen]
    waiting = runner.submit(gang("g2", tmp_path / "out2", "wait", nodes=2, gpus=1))
    assert not waiting.started and "waiting for 2 free GPUs (4 of 4 in use)" in waiting.reason
    (out / "go").touch()
    final = ended(runner, "g1")
    assert final.exit_code == 0 and final.reason == ""


def test_one_rank_failing_ends_the_others_and_names_the_rank(runner: LocalRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner.submit(gang("g1", out, "fail-1", nodes=3, gpus=0))
    final = ended(runner, "g1")
    assert final.exit_code == 3 and final.reason == "rank 1 of 3 exited 3"
    others = [r["pid"] for r in ranks(out, 3)]
    wait_for(lambda: not any(procs.is_alive(pid, None) for pid in others), 10, "ranks 0 and 2 ended with it")
    assert "rank 1 of 3 exited 3; the other ranks were ended with it" in runner.logs("g1", 1)


def test_a_rank_killed_by_a_signal_is_named(runner: LocalRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner.submit(gang("g1", out, "wait", gpus=0))
    os.kill(ranks(out, 2)[1]["pid"], signal.SIGKILL)
    final = ended(runner, "g1")
    assert final.exit_code == 137 and final.reason == "rank 1 of 2 terminated by SIGKILL"


def test_stop_ends_every_rank(runner: LocalRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner.submit(gang("g1", out, "wait", gpus=0))
    pids = [r["pid"] for r in ranks(out, 2)]
    runner.stop("g1", 1, timedelta(seconds=5))
    assert not any(procs.is_alive(pid, None) for pid in pids)
    assert runner.status("g1", 1).phase == AttemptPhase.EXITED


def test_a_gang_bigger_than_the_machine_never_fits(runner: LocalRunner) -> None:
    spec = ExperimentSpec(name="big", command=("true",), image="local", gpus=4, nodes=2)
    assert runner.check_fits(spec) == "needs 8 GPUs but this machine has 4 (set EXPBOT_LOCAL_GPUS)"


def test_of_ranks_that_ended_together_the_one_a_signal_killed_is_the_cause() -> None:
    # Rank 0 fails because its peer went (exit 1); rank 1 was killed. Both are over before the shim
    # looks: it must name rank 1, whichever the kernel reports first. Run apart: wait_ranks reaps any child.
    code = r"""
import os, sys, time
from adapters.local.gang_shim import describe, wait_ranks
spawn = lambda src: os.posix_spawn(sys.executable, [sys.executable, "-c", src], dict(os.environ))
pids = {spawn("raise SystemExit(1)"): 0, spawn("import os; os.kill(os.getpid(), 9)"): 1}
zombie = lambda pid: open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
deadline = time.monotonic() + 30
while not all(map(zombie, pids)) and time.monotonic() < deadline:
    time.sleep(0.01)
rank, status = wait_ranks(pids)
print(describe(rank, 2, status)[1])
"""
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=repo)
    assert out.stdout.strip() == "rank 1 of 2 terminated by SIGKILL", out.stderr


def test_a_stop_gives_every_rank_its_grace_and_the_toy_keeps_its_step(runner: LocalRunner, tmp_path: Path) -> None:
    toy = str(Path(__file__).resolve().parents[2] / "examples" / "train_gang_toy.py")
    spec = ExperimentSpec(name="toy", command=(PY, toy, "--steps", "100000", "--step-seconds", "0.01"), image="local",
                          nodes=2)
    runner.submit(AttemptLaunch("toy", "toy", 1, spec, "ana", None, timedelta(hours=1)))
    wait_for(lambda: "rank 1 of 2: starting fresh" in runner.logs("toy", 1), 20, "rank 1 running")
    runner.stop("toy", 1, timedelta(seconds=20))
    log = runner.logs("toy", 1)
    assert "checkpoint saved" in log, log  # rank 0 was not killed when rank 1 stopped first
    assert runner.status("toy", 1).exit_code == 143


# Rank 0 takes a second to save on SIGTERM, rank 1 ends at once.
SLOW_SAVE = r"""
import os, pathlib, signal, sys, time
def on_term(signo, frame):
    if os.environ["NODE_RANK"] == "0":
        time.sleep(1.0)
        pathlib.Path(sys.argv[1], "saved").write_text("rank 0")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
pathlib.Path(sys.argv[1], "rank-" + os.environ["NODE_RANK"]).touch()
while True:
    time.sleep(0.01)
"""


def test_a_rank_that_stops_first_does_not_cut_the_others_grace_short(runner: LocalRunner, tmp_path: Path) -> None:
    spec = ExperimentSpec(name="slow", command=(PY, "-c", SLOW_SAVE, str(tmp_path)), image="local", nodes=2)
    runner.submit(AttemptLaunch("slow", "slow", 1, spec, "ana", None, timedelta(hours=1)))
    wait_for(lambda: (tmp_path / "rank-0").exists() and (tmp_path / "rank-1").exists(), 20, "both ranks")
    runner.stop("slow", 1, timedelta(seconds=20))
    assert (tmp_path / "saved").read_text() == "rank 0"
