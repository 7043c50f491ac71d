"""`/experiment launch`'s ack tells the truth (Bolt over HTTP, requests signed as Slack signs them)."""
from __future__ import annotations

import gc
import threading

import pytest

from core.model import State
from tests.integration.slack_harness import SlackBot, slack_bot  # noqa: F401  (fixture: local_gpus=2)
from tests.polling import wait_for

pytestmark = pytest.mark.slow


def test_a_launch_that_can_never_fit_is_refused_in_the_ack_without_server_side_advice(slack_bot):
    ack = slack_bot.slash("launch bad-gpu --gpus 8 -- python -c pass")
    assert ack.status_code == 200
    said = ack.text
    assert "bad-gpu: needs 8 GPUs but this machine has 2" in said, said
    assert "Launching" not in said and "EXPBOT_" not in said
    assert slack_bot.experiments() == []


def test_a_redelivered_launch_does_not_say_launching_again_and_launches_once(slack_bot):
    trigger = slack_bot.slack_api.new_trigger_id()
    first = slack_bot.slash("launch twice -- python -c pass", trigger_id=trigger)
    assert "Launching twice" in first.text
    again = slack_bot.slash("launch twice -- python -c pass", trigger_id=trigger,
                            extra_headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200 and "Launching" not in again.text
    wait_for(lambda: (e := slack_bot.experiment("twice")) and e.state == State.SUCCEEDED, what="the launch to run")
    # Either delivery's work may commit the launch first; the other finds it launched and says nothing.
    wait_for(lambda: [r for r in slack_bot.slack_api.responses() if "Launched twice" in r.payload.get("text", "")],
             what="the launch's answer")
    assert [e.name for e in slack_bot.experiments()] == ["twice"]


def test_the_ack_is_answered_in_the_requests_own_thread(slack_bot, monkeypatch):
    # Bolt's other mode hands each listener to a second pool and polls for its ack every 10 ms.
    from bot.slack import slash

    seen: list[str] = []
    split = slash.split_subcommand
    monkeypatch.setattr(slash, "split_subcommand", lambda text: (seen.append(threading.current_thread().name), split(text))[1])
    assert "Launching here" in slack_bot.slash("launch here -- python -c pass").text
    assert seen and seen[0].startswith("waitress"), seen


def test_serve_keeps_start_ups_objects_out_of_full_collections(tmp_path, slack_api):
    gc.unfreeze()  # whatever an earlier test froze
    bot = SlackBot(tmp_path / "data", slack_api)
    try:
        assert gc.get_freeze_count() > 10_000  # modules, settings, the Slack app: walked by no collection
    finally:
        bot.close()
