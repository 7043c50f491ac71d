"""A real `expbot serve`'s log: quiet by default (decisions at INFO, APScheduler's per-run lines at
DEBUG), and one JSON object per line with EXPBOT_LOG_FORMAT=json."""
from __future__ import annotations

import json
import logging
import sys

import pytest

from tests.integration.cli_harness import Expbot, wait_for
from tests.integration.slack_harness import slack_bot  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

# Long enough for the idle check (every 0.2 s below) to run many times while the experiment does.
_RUNS_A_WHILE = "import time; time.sleep(2)"


def run_one(bot: Expbot, name: str, code: str) -> dict:
    """Launch `code` under a running serve and wait until the experiment has ended."""
    bot.cli("launch", name, "--max-restarts", "1", "--", sys.executable, "-c", code)
    return wait_for(lambda: (s := bot.status(name))["state"] in ("SUCCEEDED", "FAILED") and s, 90, f"{name} to end")


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_scheduler_chatter_only_at_debug_and_decisions_at_info(tmp_path, level):
    bot = Expbot(tmp_path / "data", EXPBOT_IDLE_CHECK_SECONDS="0.2", EXPBOT_LOG_LEVEL=level)
    try:
        bot.serve()
        wait_for(lambda: "expbot serving" in bot.serve_logs(), 60, "serve to start")
        assert run_one(bot, "quiet", _RUNS_A_WHILE)["state"] == "SUCCEEDED"
        wait_for(lambda: "[quiet] succeeded" in bot.serve_logs(), 30, "the success in the log")
    finally:
        bot.kill_serve()
    log = bot.serve_logs()
    assert "INFO expbot.events: [quiet] attempt 1 started" in log, log[-3000:]
    chatter = [line for line in log.splitlines() if "apscheduler" in line and "Running job" in line]
    if level == "DEBUG":  # the same run does have the chatter: only the level hides it
        assert chatter and all(" DEBUG apscheduler." in line for line in chatter), log[-3000:]
    else:
        assert chatter == [], chatter[:3]
        assert not [line for line in log.splitlines() if " INFO apscheduler." in line], log[-3000:]


_FAILS_ONCE = "import os, sys; sys.exit(1 if os.environ['EXPBOT_ATTEMPT'] == '1' else 0)"


def test_json_log_is_one_object_per_line_naming_experiment_and_attempt(tmp_path):
    bot = Expbot(tmp_path / "data", EXPBOT_LOG_FORMAT="json")
    try:
        bot.serve()
        wait_for(lambda: "expbot serving" in bot.serve_logs(), 60, "serve to start")
        exp = run_one(bot, "jsonlog", _FAILS_ONCE)
        wait_for(lambda: "[jsonlog] succeeded" in bot.serve_logs(), 30, "the success in the log")
    finally:
        bot.kill_serve()
    entries = [json.loads(line) for line in bot.serve_logs().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries), entries[:3]
    started = {e["attempt"]: e for e in entries if e["message"].startswith("[jsonlog] attempt") and "started" in e["message"]}
    assert set(started) == {1, 2}, entries
    assert all(e["experiment"] == "jsonlog" and e["experiment_id"] == exp["id"] and e["level"] == "INFO"
               for e in started.values())


def test_with_slack_on_every_decision_still_reaches_the_log_once(slack_bot, caplog):
    caplog.set_level(logging.INFO, logger="expbot.events")
    slack_bot.slash(f"launch logged -- {sys.executable} -c pass")
    wait_for(lambda: any("[logged] succeeded" in r.getMessage() for r in caplog.records), 60, "the success in the log")
    started = [r for r in caplog.records if r.getMessage() == "[logged] attempt 1 started, from scratch"]
    assert len(started) == 1, [r.getMessage() for r in caplog.records]
    assert (started[0].experiment, started[0].attempt) == ("logged", 1)  # the JSON format's fields
