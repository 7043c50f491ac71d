"""Stops belong to `expbot serve`: an interrupted CLI changes nothing, and no serve means later."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.cli_harness import EXPBOT, REPO, Expbot, wait_for

pytestmark = pytest.mark.slow

# Ignores SIGTERM, says its pid, and touches a file while it lives.
STUBBORN = r"""
import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
out = pathlib.Path(sys.argv[1])
(out / "pid").write_text(str(os.getpid()))
while True:
    (out / "alive").touch()
    time.sleep(0.05)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture
def expbot(tmp_path: Path):
    bot = Expbot(tmp_path / "data", EXPBOT_STOP_GRACE_SECONDS="10")
    yield bot
    bot.kill_serve()
    pid_file = tmp_path / "pid"
    if pid_file.exists() and alive(int(pid_file.read_text())):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def launch_stubborn(expbot: Expbot, name: str, out: Path) -> tuple[dict, int]:
    expbot.cli("launch", name, "--", sys.executable, "-c", STUBBORN, str(out))
    status = wait_for(lambda: (s := expbot.status(name))["state"] == "RUNNING" and s, 30, "running")
    pid = wait_for(lambda: (out / "pid").exists() and int((out / "pid").read_text()), 30, "the workload's pid")
    return status, pid


def test_an_interrupted_stop_is_finished_by_serve_at_the_end_of_the_grace(expbot, tmp_path):
    expbot.serve()
    _status, pid = launch_stubborn(expbot, "stubborn", tmp_path)
    client = subprocess.Popen([*EXPBOT, "stop", "stubborn"], cwd=REPO, env=expbot.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: expbot.status("stubborn")["state"] == "STOPPING", 30, "the stop to be recorded")
    asked = time.time()
    time.sleep(1)  # the person gives up one second into the grace
    client.kill()
    client.wait(timeout=10)
    # The experiment is STOPPING while the workload lives, and STOPPED only once it is gone.
    while (state := expbot.status("stubborn")["state"]) == "STOPPING":
        assert time.time() - asked < 60, "serve never finished the stop"
    assert state == "STOPPED" and not alive(pid)
    died = (tmp_path / "alive").stat().st_mtime  # it touched this file every 50 ms while it lived
    # The grace counts from serve's SIGTERM (the runner marks the attempt just before it), not from
    # when a status call, slow on a loaded machine, happened to show STOPPING.
    [marker] = expbot.data_dir.glob("runs/*/attempt-1/stop-requested")
    assert died - marker.stat().st_mtime > 8, "the workload was killed before its grace ended"
    final = wait_for(lambda: (s := expbot.status("stubborn"))["state"] == "STOPPED" and s, 30, "STOPPED")
    [attempt] = final["attempts"]
    assert attempt["failure_class"] == "stopped" and attempt["exit_code"] == 128 + signal.SIGKILL
    assert "SIGKILL" in attempt["reason"]


def test_a_stop_asked_while_no_serve_runs_is_carried_out_when_one_starts(expbot, tmp_path):
    expbot.env["EXPBOT_STOP_GRACE_SECONDS"] = "1"
    expbot.serve()
    _status, pid = launch_stubborn(expbot, "later", tmp_path)
    expbot.kill_serve()
    asked = expbot.cli("stop", "later", "--no-wait")
    assert "STOPPING" in asked.stdout and "SIGKILL after 1s" in asked.stdout
    assert expbot.status("later")["state"] == "STOPPING" and alive(pid)
    expbot.serve()
    wait_for(lambda: not alive(pid), 30, "serve to end the workload")
    wait_for(lambda: expbot.status("later")["state"] == "STOPPED", 30, "STOPPED")
    waited = expbot.cli("stop", "later", check=False)
    assert waited.returncode == 2 and "already ended" in waited.stderr


def test_stop_waits_and_tells_when_serve_does_not_come(expbot, tmp_path):
    expbot.env["EXPBOT_STOP_GRACE_SECONDS"] = "0"
    expbot.serve()
    _status, pid = launch_stubborn(expbot, "orphaned", tmp_path)
    expbot.kill_serve()
    waited = expbot.cli("stop", "orphaned", check=False)
    assert waited.returncode == 2 and "still STOPPING" in waited.stderr and "Traceback" not in waited.stderr
    assert alive(pid)  # nothing but serve kills it
