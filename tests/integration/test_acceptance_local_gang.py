"""Acceptance of --nodes on the embedded default: the real CLI and `expbot serve`, real rank processes that rendezvous."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.local import procs
from tests.integration.cli_harness import REPO, Expbot, wait_for

pytestmark = pytest.mark.slow
GANG_TOY = [sys.executable, "examples/train_gang_toy.py"]
STEPS = 200


@pytest.fixture
def expbot(tmp_path: Path):
    bot = Expbot(tmp_path / "data")
    yield bot
    bot.kill_serve()
    for launch in (tmp_path / "data" / "runs").glob("*/attempt-*/launch.json"):  # leave no rank behind
        shim = bot.attempt_pid(launch.parts[-3], int(launch.parts[-2].split("-")[1]))
        for pid in [shim, *ranks_of(shim).values()]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def ranks_of(shim: int) -> dict[int, int]:
    """NODE_RANK -> pid of the gang shim's rank processes (its children)."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) != shim:
            continue
        rank = next((item[len(b"NODE_RANK="):] for item in environ if item.startswith(b"NODE_RANK=")), None)
        if rank is not None:
            found[int(rank)] = int(entry)
    return found


def uninterrupted_final_value(steps: int, tmp_path: Path) -> str:
    """Rank 0's final value of a 2-rank run nobody interrupts, run by hand."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {"EXPBOT_CHECKPOINT_DIR": str(tmp_path / "ref-ckpt"), "EXPBOT_RESUME_FROM": "",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NNODES": "2"}
    runs = [subprocess.Popen([*GANG_TOY, "--steps", str(steps), "--step-seconds", "0"], cwd=REPO,
                             env=env | {"NODE_RANK": str(rank)}, stdout=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    values = {re.search(r"final step \d+ value (\d+)", out).group(1) for out in outputs}
    assert len(values) == 1, outputs  # every rank holds the same state
    return values.pop()


def test_a_rank_killed_mid_run_restarts_the_whole_gang_from_the_checkpoint(expbot, tmp_path):
    # 20 s of work: it must still be running after several CLI round trips on a loaded machine.
    expbot.cli("launch", "gang", "--nodes", "2", "--max-restarts", "0", "--", *GANG_TOY, "--steps", str(STEPS),
               "--step-seconds", "0.1", "--checkpoint-every", "10")
    expbot.serve()
    status = wait_for(lambda: (s := expbot.status("gang"))["state"] == "RUNNING" and s, 60, "attempt 1 running")
    checkpoints = expbot.data_dir / "runs" / status["id"] / "checkpoints"
    wait_for(lambda: len(list(checkpoints.glob("ckpt-*.json"))) >= 2, 30, "two checkpoints")
    shim = expbot.attempt_pid(status["id"], 1)
    first_ranks = wait_for(lambda: len(r := ranks_of(shim)) == 2 and r, 10, "both ranks")
    born = {pid: procs.start_time(pid) for pid in first_ranks.values()}  # pids are reused: know them by birth
    assert expbot.status("gang")["state"] == "RUNNING"  # attempt 1 had not finished meanwhile

    os.kill(first_ranks[1], signal.SIGKILL)  # as a lost node would

    final = wait_for(lambda: (s := expbot.status("gang"))["state"] in ("SUCCEEDED", "FAILED") and s, 120, "the end")
    assert final["state"] == "SUCCEEDED", final
    first, second = final["attempts"]
    assert first["failure_class"] == "infra" and first["exit_code"] == 137
    assert first["reason"] == "rank 1 of 2 terminated by SIGKILL"
    assert not any(procs.is_alive(pid, started) for pid, started in born.items())  # rank 0 went with it
    assert final["restarts"] == {"user": 0, "infra": 1, "uncounted": 0}
    assert second["resumed_from"] and Path(second["resumed_from"]).parent == checkpoints
    log2 = expbot.cli("logs", "gang", "--attempt", "2").stdout
    resumed = {int(rank): int(step) for rank, step in re.findall(r"rank (\d) of 2: resumed from step (\d+)", log2)}
    assert set(resumed) == {0, 1} and len(set(resumed.values())) == 1 and resumed[0] >= 10, log2
    finals = set(re.findall(rf"rank \d: final step {STEPS} value (\d+)", log2))
    assert finals == {uninterrupted_final_value(STEPS, tmp_path)}, log2
    assert "2 nodes, CPU only" in expbot.cli("ls", "--all").stdout
