"""Slack names people as people and durations as the rest of expbot does (Bolt over HTTP, signed requests)."""
from __future__ import annotations

import pytest

from bot.slack.ids import ActionId
from core.model import State
from tests.integration.slack_harness import CHANNEL, SlackBot
from tests.polling import wait_for

pytestmark = pytest.mark.slow
APPROVALS = "C0APPROVALS"
OVER_BUDGET = "launch {name} --project nlp --gpus 2 --gpu-type a100 --hours 10 -- python -c pass"


@pytest.fixture
def slack_bot(tmp_path, slack_api):
    config = tmp_path / "expbot.toml"
    # 0.0005 h is 1.8 s: the request expires while the test watches.
    config.write_text('[budgets]\nprojects = { nlp = 40.0 }\napproval_ttl_hours = 0.0005\n')
    bot = SlackBot(tmp_path / "data", slack_api, config_file=str(config), slack_approvers="UAPPROVER",
                   slack_approvals_channel=APPROVALS)
    yield bot
    bot.close()


def thread_text(slack_bot) -> str:
    parents = [m for m in slack_bot.slack_api.messages(CHANNEL) if not m.thread_ts]
    return " ".join(m.text for p in parents for m in slack_bot.slack_api.messages(CHANNEL, thread_ts=p.ts))


def answer(slack_bot) -> str:
    said = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="an answer")
    return said[-1].payload["text"]


def test_refusals_read_the_same_on_every_path_and_name_the_owner_as_a_mention(slack_bot):
    slack_bot.slash('launch mine -- python -c "import time; time.sleep(60)"')
    wait_for(lambda: (e := slack_bot.experiment("mine")) and e.state == State.RUNNING, what="running")
    refusal = "only <@UOWNER> (the owner) or an admin may stop mine"

    slack_bot.slash("stop mine", user="UOTHER")
    assert refusal in answer(slack_bot)
    slack_bot.press(ActionId.STOP.value, "mine", user="UOTHER")
    assert refusal in answer(slack_bot)

    slack_bot.press(ActionId.STOP.value, "mine", user="UOWNER")
    wait_for(lambda: slack_bot.experiment("mine").state == State.STOPPED, what="the stop")
    told = wait_for(lambda: (t := thread_text(slack_bot)) and "stopped by" in t and t, what="the stop in the thread")
    assert "stopped by <@UOWNER>" in told and "by UOWNER" not in told
    slack_bot.slash("status mine")
    wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="the status")
    status = str(slack_bot.slack_api.responses(slack_bot.last_response_url)[-1].payload["blocks"])
    assert "stopped by <@UOWNER>" in status and "by UOWNER" not in status


def test_approvals_name_the_approver_and_an_expiry_says_how_long_as_expbot_writes_durations(slack_bot):
    slack_bot.slash(OVER_BUDGET.format(name="denied"))
    exp = wait_for(lambda: slack_bot.experiment("denied"), what="the launch")
    wait_for(lambda: slack_bot.slack_api.messages(APPROVALS), what="the approval request")
    slack_bot.press(ActionId.DENY, exp.launch_id, user="UAPPROVER")
    told = wait_for(lambda: (t := thread_text(slack_bot)) and "denied by" in t and t, what="the denial")
    assert "denied by <@UAPPROVER>" in told and "by UAPPROVER" not in told

    slack_bot.slash(OVER_BUDGET.format(name="forgotten"))
    # serve's own scheduling expires it: nobody sends ExpireApprovals by hand.
    wait_for(lambda: (e := slack_bot.experiment("forgotten")) and e.state == State.REJECTED, timeout=45,
             what="the request to expire soon after its 1.8 s")
    reason = slack_bot.experiment("forgotten").state_reason
    assert reason == "approval request expired after 1s", reason
    told = wait_for(lambda: (t := thread_text(slack_bot)) and "expired" in t and t, what="the expiry in the thread")
    assert "approval request expired after 1s" in told and "0:00" not in told


def test_a_users_budget_names_the_user_as_a_mention(tmp_path, slack_api):
    config = tmp_path / "expbot.toml"
    config.write_text('[budgets]\nusers = { UOWNER = 10.0 }\nalert_thresholds = [50]\n'
                      'channels = { nlp = "C0NLP" }\n')
    bot = SlackBot(tmp_path / "data", slack_api, config_file=str(config), slack_approvers="UAPPROVER",
                   slack_approvals_channel=APPROVALS)
    try:
        bot.slash(OVER_BUDGET.format(name="mine"))
        request = wait_for(lambda: slack_api.messages(APPROVALS), what="the approval request")[0]
        assert "user <@UOWNER>" in str(request.blocks) and "*UOWNER*" not in str(request.blocks)
        told = wait_for(lambda: (t := thread_text(bot)) and "waiting for approval" in t and t, what="the thread")
        assert "user <@UOWNER>:" in told and "user UOWNER" not in told
    finally:
        bot.close()
