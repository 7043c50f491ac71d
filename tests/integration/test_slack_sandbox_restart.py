"""The Slack sandbox's page survives a restart of a real `expbot serve`: its threads take the new serve's replies."""
from __future__ import annotations

import json
import re
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_harness import Expbot, wait_for

pytestmark = pytest.mark.slow
_WAIT_FOR_GATE = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)"


def _page_url(log: Path) -> str:
    """The sandbox's URL once its page answers (serve prints it just before it listens)."""
    found = wait_for(lambda: re.search(r"Slack experience at (http://\S+/sandbox)", log.read_text()), 60,
                     "serve to print the sandbox URL")
    wait_for(lambda: _answers(found.group(1)), 60, "the sandbox page to answer")
    return found.group(1)


def _answers(url: str) -> bool:
    try:
        _messages(url)
    except OSError:  # refused: not listening yet
        return False
    return True


def _messages(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/state?user=U0OWNER&seq=-1", timeout=10) as answer:
        return json.loads(answer.read())["messages"]


def _parent(url: str, name: str) -> dict[str, Any] | None:
    return next((m for m in _messages(url) if m["bot"] and not m["thread_ts"] and name in m["html"]), None)


def _newest_log(expbot: Expbot) -> Path:
    return sorted(expbot.data_dir.glob("serve-*.log"))[-1]


def test_messages_and_threads_survive_a_restart_and_the_old_thread_takes_new_replies(tmp_path):
    expbot, gate = Expbot(tmp_path / "data"), tmp_path / "gate"
    expbot.cli("launch", "waits", "--", sys.executable, "-c", _WAIT_FOR_GATE, str(gate))
    expbot.serve()
    try:
        before = _page_url(_newest_log(expbot))
        parent = wait_for(lambda: (p := _parent(before, "waits")) and "Running" in p["html"] and p, 60,
                          "the parent message, running")
        expbot.kill_serve(signal.SIGTERM)  # a restart: a deploy, an upgrade
        expbot.serve()
        after = _page_url(_newest_log(expbot))
        assert after != before  # a fresh port: nothing of the old serve answers
        kept = _parent(after, "waits")
        assert kept is not None and kept["ts"] == parent["ts"], _messages(after)

        gate.write_text("")  # the workload ends under the new serve
        done = wait_for(lambda: (p := _parent(after, "waits")) and "Succeeded" in p["html"] and p, 60,
                        "the same parent edited to Succeeded")
        assert done["ts"] == parent["ts"]
        replies = wait_for(lambda: [m for m in _messages(after) if m["thread_ts"] == parent["ts"]
                                    and "succeeded" in m["html"]], 30, "the reply in the old thread")
        assert len(replies) == 1, replies
        assert not [m for m in _messages(after) if not m["thread_ts"] and "succeeded" in m["html"]
                    and m["ts"] != parent["ts"]]  # not posted beside the thread instead
        said = _newest_log(expbot).read_text()
        assert "Traceback" not in said and "next try in" not in said, said  # no delivery was refused
        # Serve's start-up line tells the sandbox from Slack.
        assert f"Slack on through the Web API at {after}/api/ (not slack.com)" in said, said
    finally:
        gate.write_text("")
        expbot.kill_serve()
