"""Events reach Slack threads: fallbacks when a channel refuses, Socket Mode redeliveries, admins by group."""
from __future__ import annotations

import json
import time

import pytest
from slack_bolt.request import BoltRequest

from bot.slack.app import create_app
from core import commands
from core.events import NodeUnhealthy
from core.model import State
from tests.integration.slack_harness import CHANNEL, SlackBot
from tests.polling import wait_for

pytestmark = pytest.mark.slow




@pytest.fixture
def slack_bot(tmp_path, slack_api):
    slack_api.add_usergroup("S0ADMINS", ["UGROUPADMIN"])
    bot = SlackBot(tmp_path / "data", slack_api, slack_default_channel="C0DEFAULT", slack_admin_group="S0ADMINS")
    yield bot
    bot.close()


def test_a_channel_that_refuses_the_bot_sends_the_thread_to_the_default_channel(slack_bot):
    slack_bot.slack_api.refuse_channel(CHANNEL, "not_in_channel")
    slack_bot.slash("launch elsewhere -- python -c pass")
    parent = wait_for(lambda: [m for m in slack_bot.slack_api.messages("C0DEFAULT") if not m.thread_ts], what="parent")
    assert "elsewhere" in str(parent[0].blocks)
    wait_for(lambda: slack_bot.slack_api.messages("C0DEFAULT", thread_ts=parent[0].ts), what="replies in that thread")


def test_cli_launches_get_their_thread_in_the_default_channel(slack_bot):
    slack_bot.bot.bus.handle(commands.LaunchExperiment(text="from-cli -- python -c pass", owner="ana"))
    parent = wait_for(lambda: [m for m in slack_bot.slack_api.messages("C0DEFAULT") if not m.thread_ts], what="parent")
    assert "from-cli" in str(parent[0].blocks)


def test_members_of_the_admin_group_may_stop_anything(slack_bot):
    slack_bot.slash("launch guarded -- python -c \"import time; time.sleep(60)\"")
    wait_for(lambda: (e := slack_bot.experiment("guarded")) and e.state == State.RUNNING, what="running")
    slack_bot.press("experiment_stop", "guarded", user="UGROUPADMIN")
    exp = wait_for(lambda: (e := slack_bot.experiment("guarded")) and e.is_terminal and e, what="stopped")
    assert exp.state == State.STOPPED and exp.stopped_by == "UGROUPADMIN"


def test_socket_mode_redelivery_of_an_event_is_handled_once(slack_bot):
    app = create_app(slack_bot.bot, slack_bot.bot.slack_client, socket_mode=True)
    body = {"type": "event_callback", "team_id": "T000FAKE", "api_app_id": "A0EXPBOT", "event_id": "Ev0SOCKET1",
            "event": {"type": "app_home_opened", "user": "UOWNER", "tab": "home"}}
    for _ in range(2):  # the second is Socket Mode's retry_attempt=1 of the same envelope
        response = app.dispatch(BoltRequest(body=json.dumps(body), mode="socket_mode"))
        assert response.status == 200
    wait_for(lambda: slack_bot.slack_api.calls_to("views.publish"), what="views.publish")
    time.sleep(0.3)
    assert len(slack_bot.slack_api.calls_to("views.publish")) == 1


def test_an_internal_error_reaches_the_user_as_one_line_with_an_error_id(slack_bot, monkeypatch):
    slack_bot.slash("launch broken-logs -- python -c pass")
    wait_for(lambda: (e := slack_bot.experiment("broken-logs")) and e.is_terminal, what="finished")

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(slack_bot.bot.backend, "logs", explode)
    slack_bot.slash("logs broken-logs")
    answer = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="the answer")
    text = answer[0].payload["text"]
    assert "error id" in text and "disk on fire" not in text and "Traceback" not in text
    assert answer[0].payload.get("response_type") == "ephemeral"


def test_an_error_before_the_ack_still_reaches_the_user_with_an_error_id(slack_bot, monkeypatch):
    from bot.slack import slash

    def explode(text):
        raise RuntimeError("parser on fire")

    monkeypatch.setattr(slash, "split_subcommand", explode)
    response = slack_bot.slash("list")
    assert "parser on fire" not in response.text and "Traceback" not in response.text
    answer = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="the answer")
    assert "error id" in answer[0].payload["text"]


def test_an_expired_trigger_is_told_not_swallowed(slack_bot):
    slack_bot.slack_api.trigger_ttl = 0.0
    response = slack_bot.slash("launch")
    assert response.status_code == 200 and "try again" in response.text


def test_a_sick_node_is_reported_once_to_the_operations_channel_not_a_thread(tmp_path, slack_api):
    bot = SlackBot(tmp_path / "data", slack_api, slack_default_channel="C0DEFAULT", slack_ops_channel="C0OPS")
    try:
        report = NodeUnhealthy(experiment_id="e1", experiment_name="three", node="gpu-a100-3", experiments=3,
                               faults=4, window_hours=24, last_reason="hardware fault (Xid 79: GPU has fallen off the bus)")
        bot.bot.notifier.notify(report)
        bot.bot.notifier.notify(report)  # the outbox redelivers at least once
        [posted] = slack_api.messages("C0OPS")
        assert "gpu-a100-3" in posted.text and "3 experiments" in posted.text and "Xid 79" in posted.text
        assert not posted.thread_ts and slack_api.messages("C0DEFAULT") == []
    finally:
        bot.close()
