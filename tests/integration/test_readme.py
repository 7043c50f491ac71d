"""The README's quick start works as written: `make run` serves, and its example launch succeeds."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.cli_harness import REPO, Expbot, wait_for

pytestmark = pytest.mark.slow


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = section.split("```", 2)[1]
    return [line.split("#")[0].strip() for line in first_block.strip().splitlines()]


def test_readme_documents_exactly_two_setup_commands():
    assert quick_start_commands() == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_and_supervises_the_readme_example(tmp_path):
    bot = Expbot(tmp_path / "data")
    venv = Path(sys.prefix)  # the venv running the tests: `make run` installs into it and serves
    log = open(tmp_path / "make-run.log", "w")
    proc = subprocess.Popen(["make", "run", f"VENV={venv}"], cwd=REPO, env=bot.env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "expbot serving" in (tmp_path / "make-run.log").read_text(), 120, "expbot serve to start")
        readme = (REPO / "README.md").read_text()
        example = re.search(r"\.venv/bin/expbot (launch toy .*)", readme).group(1).split()
        # The README's example, with fewer steps so the test stays short.
        args = [w if w != "300" else "20" for w in example[1:]] + ["--step-seconds", "0.01"]
        bot.cli("launch", *args)
        final = wait_for(lambda: (s := bot.status("toy"))["state"] in ("SUCCEEDED", "FAILED") and s, 60, "toy to end")
        assert final["state"] == "SUCCEEDED", final
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGUSR1)  # serve dumps its threads' stacks into the log
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("serve did not stop on SIGTERM:\n" + (tmp_path / "make-run.log").read_text()[-6000:])
    assert "expbot stopped" in (tmp_path / "make-run.log").read_text()


def test_serve_stops_while_signals_keep_coming(tmp_path):
    # make forwards SIGTERM to serve on top of the process group's: a second signal arriving while
    # the first is being handled must not deadlock the handler (it once did, inside Event.set).
    bot = Expbot(tmp_path / "data")
    proc = bot.serve()
    wait_for(lambda: "expbot serving" in bot.serve_logs(), 60, "expbot serve to start")
    for _ in range(20000):  # as fast as possible: some land while a handler is already running
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            break
    proc.wait(timeout=30)
    assert "expbot stopped" in bot.serve_logs()
