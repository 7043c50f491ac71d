"""/experiment list over signed HTTP: an empty answer says what was left out, never that nothing exists."""
from __future__ import annotations

import json

import pytest

from bot.slack import replies
from core.model import State
from tests.integration.slack_harness import SlackBot, slack_bot  # noqa: F401  (fixture)
from tests.polling import wait_for

pytestmark = pytest.mark.slow


def reply(slack_bot: SlackBot, text: str) -> dict:
    slack_bot.slash(text)
    said = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what=f"the reply to {text!r}")
    return said[-1].payload


def test_list_with_only_ended_experiments_points_at_all_instead_of_saying_none_exist(slack_bot):
    assert "No experiments yet" in reply(slack_bot, "list --all")["text"]  # truly none: the first-time answer
    slack_bot.slash("launch done-run -- python -c pass")
    wait_for(lambda: (exp := slack_bot.experiment("done-run")) is not None and exp.state == State.SUCCEEDED,
             what="done-run to succeed", timeout=60)
    mine = reply(slack_bot, "list")["text"]
    assert "No experiments yet" not in mine
    assert "Nothing running or queued" in mine and "/experiment list --all" in mine
    in_project = reply(slack_bot, "list --project default")["text"]
    assert "Nothing running or queued in project default" in in_project
    assert "list --all --project default" in in_project
    assert "done-run" in json.dumps(reply(slack_bot, "list --all")["blocks"])


def test_help_describes_list_as_it_behaves():
    _, blocks = replies.help_blocks("usage")
    [line] = [line for line in blocks[0].text.text.splitlines() if "/experiment list" in line]
    assert "--all" in line and "recent" not in line
