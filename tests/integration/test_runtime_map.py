"""ARCHITECTURE.md stays true: every thread a real `expbot serve` starts is named in its map of threads."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from core.model import State
from tests.integration.slack_harness import SlackBot
from tests.polling import wait_for

pytestmark = pytest.mark.slow
MAP = Path(__file__).resolve().parents[2] / "ARCHITECTURE.md"


def normalised(name: str) -> str:
    """A thread's name without what differs per run: numbers (pools, pids) and the stopped experiment's name."""
    name = re.sub(r"^expbot-stop-.*", "expbot-stop-<name>", name)
    name = re.sub(r" \(.*\)$", "", name)  # Python's "Thread-3 (target)" suffix
    return re.sub(r"\d+", "N", name)


def test_every_thread_serve_starts_is_on_the_map(tmp_path, slack_api, monkeypatch):
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    bot = SlackBot(tmp_path / "data", slack_api)
    try:
        # A launch through Slack, its attempt running, a stop: the threads each of those starts.
        bot.slash("launch mapped -- python -c \"import time; time.sleep(60)\"")
        wait_for(lambda: (e := bot.experiment("mapped")) and e.state == State.RUNNING, 30, "running")
        bot.press("experiment_stop", "mapped", user="UOWNER")
        wait_for(lambda: (e := bot.experiment("mapped")) and e.state == State.STOPPED, 30, "stopped")
    finally:
        bot.close()
    # Not serve's: the thread standing in for its main thread, and the local Slack Web API's request threads.
    names = {normalised(t.name) for t in started
             if t is not bot._thread and "(process_request_thread)" not in t.name}
    text = MAP.read_text()
    missing = sorted(n for n in names if f"`{n}`" not in text)
    print("threads started by serve:", sorted(names))
    assert not missing, f"threads expbot serve started that ARCHITECTURE.md does not name: {missing}"
    for core in ("http", "outbox-relay", "supervisor-changes", "stop-backend", "slack-work_N"):
        assert core in names, f"{core} was not started: is the map's list still what serve runs?"
