"""Tell the user when nothing will run it (#15.5): serve keeps a heartbeat in the database; `launch` and
`status` of a waiting experiment say when no serve runs; a second local serve on one data dir is refused."""
from __future__ import annotations

import json
import signal
import sqlite3

import pytest

from tests.integration.cli_harness import Expbot, wait_for

NO_SERVE = "no `expbot serve` is running for this database: it will start when one does"
QUICK = ("--", "python", "-c", "pass")
SLEEPS = ("--", "python", "-c", "import time; time.sleep(600)")


@pytest.fixture
def expbot(tmp_path):
    bot = Expbot(tmp_path / "data", EXPBOT_SERVE_HEARTBEAT_SECONDS="0.5")
    yield bot
    bot.kill_serve()


def state(bot: Expbot, name: str) -> str:
    return bot.status(name)["state"]


def heartbeats(bot: Expbot) -> list[tuple]:
    with sqlite3.connect(bot.data_dir / "expbot.db") as db:
        return db.execute("SELECT pid, backend FROM serve_heartbeat").fetchall()


@pytest.mark.slow
def test_launch_and_status_say_when_no_serve_runs_for_the_database(expbot):
    assert NO_SERVE in expbot.cli("launch", "early", *QUICK).stdout
    assert NO_SERVE in expbot.cli("status", "early").stdout
    assert expbot.status("early")["serve_running"] is False

    serve = expbot.serve()
    wait_for(lambda: state(expbot, "early") == "SUCCEEDED", 60, "serve to run the early launch")
    assert heartbeats(expbot) == [(serve.pid, "local")]
    assert NO_SERVE not in expbot.cli("status", "early").stdout  # it has ended: nothing waits for serve
    assert NO_SERVE not in expbot.cli("launch", "while-serving", *SLEEPS).stdout
    wait_for(lambda: state(expbot, "while-serving") == "RUNNING", 60, "serve to start it")

    expbot.kill_serve(signal.SIGTERM)  # a clean stop takes the heartbeat away at once
    assert heartbeats(expbot) == []
    assert NO_SERVE in expbot.cli("launch", "after-stop", *QUICK).stdout
    assert NO_SERVE in expbot.cli("status", "after-stop").stdout

    expbot.serve()
    wait_for(lambda: state(expbot, "after-stop") == "SUCCEEDED", 60, "the next serve to run it")
    expbot.cli("stop", "while-serving")
    expbot.kill_serve(signal.SIGKILL)  # a crash leaves its row behind: it goes stale
    expbot.cli("launch", "after-crash", *QUICK)
    wait_for(lambda: NO_SERVE in expbot.cli("status", "after-crash").stdout, 60,
             "the dead serve's heartbeat to go stale")
    assert json.loads(expbot.cli("status", "after-crash", "--json").stdout)["serve_running"] is False


@pytest.mark.slow
def test_a_second_local_serve_on_the_same_data_dir_is_refused_in_one_line(expbot):
    first = expbot.serve()
    expbot.cli("launch", "long", *SLEEPS)
    wait_for(lambda: state(expbot, "long") == "RUNNING", 60, "the first serve to start it")

    second = expbot.cli("serve", check=False)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second
    [line] = [ln for ln in second.stderr.splitlines() if ln.startswith("error: ")]
    assert f"another `expbot serve` (pid {first.pid}) is already running on EXPBOT_DATA_DIR={expbot.data_dir}" in line
    assert "local backend" in line
    assert first.poll() is None and state(expbot, "long") == "RUNNING"  # the first one carries on

    # The hold dies with its serve, and the attempt it started does not inherit it: the next serve starts.
    expbot.kill_serve(signal.SIGKILL)
    third = expbot.serve()
    wait_for(lambda: third.pid in [pid for pid, _ in heartbeats(expbot)] or third.poll() is not None, 60,
             "the next serve to beat")
    assert third.poll() is None, expbot.serve_logs()
    expbot.cli("stop", "long")  # carried out by the third serve
    assert state(expbot, "long") == "STOPPED"
