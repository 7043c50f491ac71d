"""Idle warnings over the real Bolt app and HTTP: the owner's DM, Keep / Stop, and who may press them."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from bot.slack.idle import idle_warning_blocks, idle_warning_delivery
from bot.slack.ids import ActionId
from core.idle import IdleState
from core.idle_job import IdleWarning
from core.model import State
from tests.integration.slack_harness import SlackBot
from tests.polling import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def slack_bot(tmp_path, slack_api):
    # The app as serve wires it (bootstrap's KeepExperiment handler and idle states, app.py's buttons).
    bot = SlackBot(tmp_path / "data", slack_api)
    bot.idle_states = bot.bot.idle_states
    yield bot
    bot.close()


def launch_long_running(slack_bot, name: str):
    slack_bot.slash(f"launch {name} -- python -c \"import time; time.sleep(60)\"")
    return wait_for(lambda: (e := slack_bot.experiment(name)) and e.state == State.RUNNING and e, what="running")


def responses(slack_bot):
    return wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="a response")


def test_a_non_owner_pressing_keep_is_refused_and_the_owner_s_keep_snoozes(slack_bot):
    exp = launch_long_running(slack_bot, "sleepy")
    assert slack_bot.press(ActionId.IDLE_KEEP_2H.value, "sleepy", user="UOTHER").status_code == 200
    [refusal] = responses(slack_bot)
    assert "only <@UOWNER> (the owner) or an admin may keep" in refusal.payload["text"] and refusal.payload["response_type"] == "ephemeral"
    time.sleep(0.3)
    assert slack_bot.idle_states.get(exp.id) == IdleState()
    before = datetime.now(timezone.utc)
    assert slack_bot.press(ActionId.IDLE_KEEP_24H.value, "sleepy", user="UOWNER").status_code == 200
    [answer] = responses(slack_bot)
    assert answer.payload["text"].startswith(":zzz: Keeping *sleepy* running") and answer.payload["response_type"] == "ephemeral"
    snoozed = slack_bot.idle_states.get(exp.id).snoozed_until
    assert before + timedelta(hours=24) <= snoozed <= datetime.now(timezone.utc) + timedelta(hours=24)
    with slack_bot.bot.uow_factory() as uow:
        [entry] = uow.audit.entries(action="idle-keep")
    assert entry["actor"] == "UOWNER" and entry["experiment_id"] == exp.id
    assert slack_bot.experiment("sleepy").state == State.RUNNING


def test_an_admin_may_keep_and_a_forged_keep_option_is_refused(slack_bot):
    exp = launch_long_running(slack_bot, "guarded")
    slack_bot.press("idle_keep_9999h", "guarded", user="UOWNER")
    [refusal] = responses(slack_bot)
    assert "not an option" in refusal.payload["text"]
    slack_bot.press(ActionId.IDLE_KEEP_2H.value, "guarded", user="UADMIN")
    responses(slack_bot)
    assert slack_bot.idle_states.get(exp.id).snoozed_until is not None


def test_stop_now_stops_for_the_owner_only(slack_bot):
    launch_long_running(slack_bot, "halt")
    slack_bot.press(ActionId.IDLE_STOP.value, "halt", user="UOTHER")
    assert "only <@UOWNER> (the owner) or an admin may stop" in responses(slack_bot)[0].payload["text"]
    assert slack_bot.experiment("halt").state == State.RUNNING
    slack_bot.press(ActionId.IDLE_STOP.value, "halt", user="UOWNER")
    stopped = wait_for(lambda: (e := slack_bot.experiment("halt")) and e.is_terminal and e, what="stopped")
    assert stopped.state == State.STOPPED and stopped.stopped_by == "UOWNER"


def test_the_warning_reaches_the_owner_by_dm_with_three_buttons_and_a_link_to_the_thread(slack_bot):
    exp = launch_long_running(slack_bot, "warned")
    api = slack_bot.slack_api
    parent = wait_for(lambda: [m for m in api.messages() if not m.thread_ts and "warned" in str(m.blocks)], what="parent")[0]
    event = IdleWarning(experiment_id=exp.id, experiment_name="warned", owner="UOWNER", idle_minutes=31,
                        grace_minutes=30)
    channel, ts = idle_warning_delivery(slack_bot.bot.slack_client, event, thread=(parent.channel, parent.ts))
    [dm] = [m for m in api.messages(channel) if m.ts == ts]
    assert channel.startswith("D") and "idle for 31m" in dm.text and "stopped in 30m" in dm.text
    actions = [e["action_id"] for b in dm.blocks if b["type"] == "actions" for e in b["elements"]]
    assert actions == ["idle_keep_2h", "idle_keep_24h", "idle_stop"]
    assert "its thread" in dm.text
    cli = event.model_copy(update={"owner": "ana"})
    assert idle_warning_delivery(slack_bot.bot.slack_client, cli) is None


def test_warning_text_without_auto_stop():
    event = IdleWarning(experiment_id="e", experiment_name="x<y", owner="ana", idle_minutes=45, grace_minutes=30,
                        auto_stop=False)
    text, blocks = idle_warning_blocks(event)
    assert "x&lt;y" in text and "keeps running until you stop it" in text and len(blocks) == 3
