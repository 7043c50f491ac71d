"""Acceptance of the embedded default: the real CLI, a real `expbot serve`, real processes."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cli_harness import REPO, Expbot, wait_for

pytestmark = pytest.mark.slow
TOY = [sys.executable, "examples/train_toy.py"]


@pytest.fixture
def expbot(tmp_path: Path):
    bot = Expbot(tmp_path / "data")
    yield bot
    bot.kill_serve()
    # Leave no attempt running behind the test.
    for launch in (tmp_path / "data" / "runs").glob("*/attempt-*/launch.json"):
        try:
            os.killpg(bot.attempt_pid(launch.parts[-3], int(launch.parts[-2].split("-")[1])), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def uninterrupted_final_line(steps: int, tmp_path: Path) -> str:
    env = os.environ | {"EXPBOT_CHECKPOINT_DIR": str(tmp_path / "ref-ckpt"), "EXPBOT_RESUME_FROM": ""}
    run = subprocess.run([*TOY, "--steps", str(steps), "--step-seconds", "0"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    return re.search(r"final step \d+ value \S+", run.stdout).group(0)


def test_lost_process_group_restarts_from_the_newest_checkpoint_and_succeeds(expbot, tmp_path):
    # 8 s of work: it must still be running after several CLI round trips on a loaded machine.
    expbot.cli("launch", "toy", "--max-restarts", "0", "--", *TOY, "--steps", "80", "--step-seconds", "0.1",
               "--checkpoint-every", "10")
    expbot.serve()
    status = wait_for(lambda: (s := expbot.status("toy"))["state"] == "RUNNING" and s, 20, "attempt 1 running")
    checkpoints = expbot.data_dir / "runs" / status["id"] / "checkpoints"
    wait_for(lambda: len(list(checkpoints.glob("ckpt-*.json"))) >= 2, 20, "two checkpoints")

    os.killpg(expbot.attempt_pid(status["id"], 1), signal.SIGKILL)  # as a lost node would

    final = wait_for(lambda: (s := expbot.status("toy"))["state"] in ("SUCCEEDED", "FAILED") and s, 60, "the end")
    assert final["state"] == "SUCCEEDED", final
    first, second = final["attempts"]
    assert first["failure_class"] == "infra" and first["exit_code"] is None
    assert final["restarts"] == {"user": 0, "infra": 1, "uncounted": 0}
    assert second["resumed_from"] and Path(second["resumed_from"]).parent == checkpoints
    log2 = expbot.cli("logs", "toy", "--attempt", "2").stdout
    resumed_step = int(re.search(r"resumed from step (\d+)", log2).group(1))
    assert resumed_step >= 10, log2  # attempt 2 did not start from step 0
    assert uninterrupted_final_line(80, tmp_path) in log2  # and computed exactly what an unbroken run does
    kinds = [e["kind"] for e in final["events"]]
    assert kinds.count("AttemptStarted") == 2 and "RestartScheduled" in kinds and kinds[-1] == "ExperimentSucceeded"


def test_always_failing_command_is_retried_exactly_max_restarts_times(expbot):
    expbot.cli("launch", "always-fails", "--max-restarts", "2", "--", sys.executable, "-c",
               "import sys; print('boom'); sys.exit(1)")
    expbot.serve()
    final = wait_for(lambda: (s := expbot.status("always-fails"))["state"] in ("SUCCEEDED", "FAILED") and s,
                     60, "the end")
    assert final["state"] == "FAILED"
    assert len(final["attempts"]) == 3  # the first run plus exactly max-restarts restarts
    assert all(a["exit_code"] == 1 and a["failure_class"] == "user" for a in final["attempts"])
    assert final["restarts"]["user"] == 2
    assert "exited 1" in final["reason"] and "max-restarts 2" in final["reason"]


def test_retryable_exit_code_does_not_spend_the_restart_budget(expbot):
    # Exits 75 on its first two attempts, then succeeds: with --max-restarts 0 only the listed
    # code can have earned those restarts.
    script = ("import os, sys; n = int(os.environ['EXPBOT_ATTEMPT']); print('attempt', n); "
              "sys.exit(75 if n < 3 else 0)")
    expbot.cli("launch", "flaky", "--max-restarts", "0", "--retry-on-exit-codes", "75", "--",
               sys.executable, "-c", script)
    expbot.serve()
    final = wait_for(lambda: (s := expbot.status("flaky"))["state"] in ("SUCCEEDED", "FAILED") and s, 60, "the end")
    assert final["state"] == "SUCCEEDED", final
    assert [a["exit_code"] for a in final["attempts"]] == [75, 75, 0]
    assert final["restarts"] == {"user": 0, "infra": 0, "uncounted": 2}


def test_killing_serve_loses_nothing_and_starts_no_duplicate(expbot):
    expbot.serve()
    # 12 s of work: it must outlive a status poll, a kill and a CLI launch (each ~1 s under load).
    expbot.cli("launch", "survivor", "--", *TOY, "--steps", "60", "--step-seconds", "0.2")
    status = wait_for(lambda: (s := expbot.status("survivor"))["state"] == "RUNNING" and s, 20, "running")
    pid = expbot.attempt_pid(status["id"], 1)

    expbot.kill_serve()  # SIGKILL: no clean shutdown
    expbot.cli("launch", "while-down", "--", sys.executable, "-c", "print('hello')")
    os.kill(pid, 0)  # the attempt kept running without expbot
    expbot.serve()

    final = wait_for(lambda: (s := expbot.status("survivor"))["state"] in ("SUCCEEDED", "FAILED") and s, 60, "the end")
    assert final["state"] == "SUCCEEDED" and len(final["attempts"]) == 1  # adopted, not restarted
    other = wait_for(lambda: (s := expbot.status("while-down"))["state"] == "SUCCEEDED" and s, 30, "the other")
    assert len(other["attempts"]) == 1
    listing = expbot.cli("ls", "--all", "--json").stdout
    assert listing.count('"name": "survivor"') == 1 and listing.count('"name": "while-down"') == 1


def test_stop_ends_the_process_and_it_is_never_restarted(expbot):
    expbot.serve()
    expbot.cli("launch", "to-stop", "--", *TOY, "--steps", "100000", "--step-seconds", "0.05")
    status = wait_for(lambda: (s := expbot.status("to-stop"))["state"] == "RUNNING" and s, 20, "running")
    pid = expbot.attempt_pid(status["id"], 1)
    expbot.cli("stop", "to-stop")
    # serve reaps its child a moment later; until then a zombie still counts as a group member
    wait_for(lambda: group_gone(pid), 5, "the process group to vanish")
    final = expbot.status("to-stop")
    assert final["state"] == "STOPPED" and final["attempts"][0]["failure_class"] == "stopped"
    again = expbot.cli("stop", "to-stop", check=False)
    assert again.returncode == 2 and "already ended" in again.stderr and "Traceback" not in again.stderr


def test_bad_launch_input_is_one_clear_line_and_stores_nothing(expbot):
    bad = expbot.cli("launch", "Bad_Name", "--gpus", "four", "--", "true", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert "no experiments" in expbot.cli("ls", "--all").stdout

