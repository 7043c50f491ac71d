"""Ctrl-C on a waiting `expbot` command exits 130 (a script must not read it as success), never 0."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.integration.cli_harness import EXPBOT, REPO, Expbot, wait_for

pytestmark = pytest.mark.slow

SLEEPER = "import time\nwhile True: time.sleep(0.1)"


@pytest.fixture
def expbot(tmp_path):
    bot = Expbot(tmp_path / "data")
    yield bot
    bot.kill_serve()


def test_an_interrupted_stop_exits_130_and_says_serve_finishes_it(expbot):
    expbot.serve()
    expbot.cli("launch", "sleeper", "--", sys.executable, "-c", SLEEPER)
    wait_for(lambda: expbot.status("sleeper")["state"] == "RUNNING", 30, "sleeper to run")
    expbot.kill_serve()  # nobody carries the stop out, so `stop` waits for a serve
    client = subprocess.Popen([*EXPBOT, "stop", "sleeper"], cwd=REPO, env=expbot.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: expbot.status("sleeper")["state"] == "STOPPING", 30, "the stop to be recorded")
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130, err
    assert "still STOPPING" in err and "Traceback" not in err
    expbot.serve()  # a serve carries the recorded stop out, and leaves nothing running
    wait_for(lambda: expbot.status("sleeper")["state"] == "STOPPED", 60, "serve to finish the stop")
