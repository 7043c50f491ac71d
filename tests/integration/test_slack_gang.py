"""A multi-node launch through the real Bolt app over HTTP: the ranks run, and Slack says '2 nodes x 1 h100'."""
from __future__ import annotations

import sys

import pytest

from core.model import State
from tests.integration.cli_harness import REPO
from tests.integration.slack_harness import CHANNEL, slack_bot  # noqa: F401  (fixture)
from tests.polling import wait_for

pytestmark = pytest.mark.slow
GANG_TOY = f"{sys.executable} {REPO / 'examples' / 'train_gang_toy.py'}"


def test_a_gang_launched_from_slack_runs_every_rank_and_says_nodes_x_gpus(slack_bot):
    ack = slack_bot.slash(f"launch gang --nodes 2 --gpus 1 --max-restarts 0 -- {GANG_TOY} --steps 5 --step-seconds 0")
    assert ack.status_code == 200 and "Launching gang" in ack.text
    exp = wait_for(lambda: (e := slack_bot.experiment("gang")) and e.is_terminal and e, 60, "the gang to end")
    assert exp.state == State.SUCCEEDED, exp.state_reason
    assert (exp.spec.nodes, exp.attempts[0].gpus) == (2, 2)  # billed for both ranks' GPUs
    api = slack_bot.slack_api
    parent = wait_for(lambda: [m for m in api.messages(CHANNEL) if not m.thread_ts], what="the parent message")[0]
    assert "2 nodes x 1 h100" in str(api.message(CHANNEL, parent.ts).blocks)
    wait_for(lambda: any("succeeded" in m.text for m in api.messages(CHANNEL, thread_ts=parent.ts)), what="the success reply")


def test_a_gang_bigger_than_the_machine_is_refused_in_the_ack(slack_bot):
    ack = slack_bot.slash("launch big --nodes 2 --gpus 2 -- python t.py")
    assert ack.status_code == 200 and "big: needs 4 GPUs but this machine has 2" in ack.text
    assert slack_bot.experiments() == []
