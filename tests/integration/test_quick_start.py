"""The README's quick start as written (#15.9): its example runs long enough to be killed by hand,
`expbot status` shows the process group to kill, and `kill -9 -<pgid>` makes expbot restart it from
its last checkpoint."""
from __future__ import annotations

import os
import re
import signal

import pytest

from tests.integration.cli_harness import REPO, Expbot, wait_for

pytestmark = pytest.mark.slow


def quick_start() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def example_launch() -> tuple[list[str], float]:
    """The quick start's launch (arguments after `expbot`), and how long its training runs."""
    words = re.search(r"\.venv/bin/expbot (launch toy .*)", quick_start()).group(1).split()
    steps = float(words[words.index("--steps") + 1])
    return words, steps * float(words[words.index("--step-seconds") + 1])


def test_the_example_runs_about_a_minute_and_the_kill_step_uses_what_status_shows():
    words, seconds = example_launch()
    assert 40 <= seconds <= 120, f"the quick start's example trains for {seconds:g} s: too short to kill by hand"
    text = quick_start()
    assert "expbot status toy" in text and "process group" in text and "kill -9 -<pgid>" in text, text


def test_killing_the_process_group_status_shows_restarts_from_the_last_checkpoint(tmp_path):
    words, _ = example_launch()
    words[words.index("--step-seconds") + 1] = "0.05"  # the README's run, 4x faster
    bot = Expbot(tmp_path / "data")
    try:
        bot.serve()
        bot.cli(*words)
        shown = wait_for(lambda: re.search(r"process group (\d+)", bot.cli("status", "toy").stdout), 60,
                         "status to show the attempt's process group")
        wait_for(lambda: list((tmp_path / "data").rglob("ckpt-*.json")), 60, "a checkpoint")
        os.killpg(int(shown[1]), signal.SIGKILL)  # what the README says to do
        final = wait_for(lambda: (s := bot.status("toy"))["state"] in ("SUCCEEDED", "FAILED") and s, 120, "toy to end")
    finally:
        bot.kill_serve()
    assert final["state"] == "SUCCEEDED", final
    first, second = final["attempts"][:2]
    assert first["failure_class"] not in (None, "user"), first  # a lost machine, not the code's fault
    assert re.fullmatch(r".*ckpt-\d+\.json", second["resumed_from"] or ""), second
