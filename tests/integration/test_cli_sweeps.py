"""Sweeps are groups on the command line (#15.3): the launch lists each member with its values,
`ls --group G`, `status G` sums the members up, `stop G` stops them all (asking first unless --yes)."""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest

from tests.integration.cli_harness import EXPBOT, REPO, Expbot, wait_for

SLEEPS = ("--", "python", "-c", "import time; time.sleep(600)")
MEMBERS = [("sw-1", "lr=0.1 bs=8"), ("sw-2", "lr=0.1 bs=16"), ("sw-3", "lr=0.01 bs=8"), ("sw-4", "lr=0.01 bs=16")]


@pytest.fixture
def expbot(tmp_path):
    bot = Expbot(tmp_path / "data", EXPBOT_LOCAL_GPUS="4")  # t4 GPUs cost money: a sweep's cost is not 0
    yield bot
    bot.kill_serve()


def group(bot: Expbot, name: str) -> dict:
    return json.loads(bot.cli("status", name, "--json").stdout)


def launch_sweep(bot: Expbot) -> str:
    return bot.cli("launch", "sw", "--sweep", "lr=0.1,0.01", "--sweep", "bs=8,16", "--gpus", "1",
                   "--gpu-type", "t4", *SLEEPS).stdout


def on_a_terminal(bot: Expbot, answer: str, *args: str) -> subprocess.CompletedProcess:
    """Run `expbot ARGS` with a terminal as stdin (a person who can be asked), answering `answer`."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        return subprocess.run([*EXPBOT, *args], cwd=REPO, env=bot.env, stdin=terminal, capture_output=True,
                              text=True, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)


def test_the_launch_lists_each_member_with_its_values_and_ls_status_take_the_group(expbot):
    said = launch_sweep(expbot)
    assert "sweep sw: 4 experiments" in said and "`expbot status sw`" in said and "`expbot stop sw`" in said
    for name, values in MEMBERS:
        assert re.search(rf"^\s+{name}: QUEUED\s+{values}$", said, re.M), said
    expbot.cli("launch", "sw-lookalike", *SLEEPS)  # not a member, however alike its name
    listed = expbot.cli("ls", "--group", "sw").stdout
    assert re.findall(r"\b(sw-\d|sw-lookalike)\b", listed) == [name for name, _ in MEMBERS], listed
    summary = group(expbot, "sw")
    assert summary["counts"] == {"QUEUED": 4} and summary["serve_running"] is False
    assert [(m["name"], m["values"]) for m in summary["members"]] == [
        (name, dict(v.split("=") for v in values.split())) for name, values in MEMBERS]
    text = expbot.cli("status", "sw").stdout
    assert "sweep sw: 4 experiments launched by ana - 4 QUEUED" in text
    assert "no `expbot serve` is running for this database: it will start when one does" in text
    for name, values in MEMBERS:
        assert re.search(rf"{name}\s.*QUEUED.*{values}", text), text

    expbot.serve()
    running = wait_for(lambda: (g := group(expbot, "sw"))["counts"] == {"RUNNING": 4} and g, 60, "the sweep to run")
    assert running["currency"] == "USD"
    wait_for(lambda: group(expbot, "sw")["cost"] > 0, 30, "the sweep to cost something")
    costs = group(expbot, "sw")
    assert costs["cost"] == pytest.approx(sum(m["cost"] for m in costs["members"]), abs=1e-3)
    assert "4 RUNNING" in expbot.cli("status", "sw").stdout and "serve_running" not in costs  # nothing waits
    assert expbot.status("sw-2")["name"] == "sw-2"  # a member is still an experiment of its own


@pytest.mark.slow
def test_stop_takes_the_whole_sweep_after_asking_and_refuses_to_guess_without_a_terminal(expbot):
    launch_sweep(expbot)
    expbot.cli("launch", "bystander", *SLEEPS)
    expbot.serve()
    wait_for(lambda: group(expbot, "sw")["counts"] == {"RUNNING": 4}, 60, "the sweep to run")

    piped = expbot.cli("stop", "sw", check=False)  # stdin is not a terminal: nobody to ask
    assert piped.returncode == 2 and piped.stderr.count("\n") == 1 and "Traceback" not in piped.stderr
    assert "would stop 4 experiments of sweep sw" in piped.stderr and "--yes" in piped.stderr
    declined = on_a_terminal(expbot, "n", "stop", "sw")
    assert "Stop 4 experiments of sweep sw" in declined.stdout and "nothing stopped" in declined.stdout
    assert declined.returncode == 1
    assert group(expbot, "sw")["counts"] == {"RUNNING": 4}  # asked and declined: nothing stopped

    accepted = on_a_terminal(expbot, "y", "stop", "sw", "--reason", "wrong data")
    assert accepted.returncode == 0, accepted.stderr
    assert group(expbot, "sw")["counts"] == {"STOPPED": 4}  # stop waits until serve has carried it out
    assert all(m["reason"] == "wrong data" for m in group(expbot, "sw")["members"])
    assert expbot.status("bystander")["state"] == "RUNNING"

    launch_sweep(expbot)  # the name again: a new sweep; `stop --yes` asks nobody
    wait_for(lambda: group(expbot, "sw")["counts"] == {"RUNNING": 4}, 60, "the second sweep to run")
    stopped = expbot.cli("stop", "sw", "--yes")
    assert stopped.stdout.count(": STOPPED") == 4 and group(expbot, "sw")["counts"] == {"STOPPED": 4}
    assert expbot.status("bystander")["state"] == "RUNNING"
    assert "nothing to stop" in expbot.cli("stop", "sw", "--yes").stdout


@pytest.mark.parametrize("args", [("status", "sw"), ("status", "sw", "--json"), ("ls", "--group", "sw")])
def test_reading_a_sweep_loads_neither_alembic_nor_the_wiring(expbot, args):
    from tests.integration.test_cli_newcomer import _LOADED  # the modules a read command must not load

    launch_sweep(expbot)
    done = subprocess.run([sys.executable, "-c", _LOADED, *args], cwd=REPO, env=expbot.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sw-4" in done.stdout and done.stdout.strip().splitlines()[-1] == "HEAVY:", done.stdout
