"""The approval flow end to end: Bolt over HTTP, signed requests, the local Slack Web API."""
from __future__ import annotations

import time

import pytest

from bot.slack.ids import ActionId
from core.model import State
from tests.integration.slack_harness import CHANNEL, SlackBot
from tests.polling import wait_for

pytestmark = pytest.mark.slow
APPROVALS = "C0APPROVALS"
# One a100 costs 2.5 an hour: 2 GPUs for 10 hours (50) is over the 40 budget of project "nlp".
OVER_BUDGET = "launch {name} --project nlp --gpus 2 --gpu-type a100 --hours 10 -- python -c pass"


@pytest.fixture
def slack_bot(tmp_path, slack_api):
    config = tmp_path / "expbot.toml"
    config.write_text('[budgets]\nprojects = { nlp = 40.0 }\napproval_ttl_hours = 24\n')
    bot = SlackBot(tmp_path / "data", slack_api, config_file=str(config), slack_approvers="UAPPROVER",
                   slack_approvals_channel=APPROVALS)
    yield bot
    bot.close()


def approval_request(slack_bot):
    return wait_for(lambda: slack_bot.slack_api.messages(APPROVALS), what="the approval request")[0]


def test_over_budget_launch_waits_and_an_approver_lets_it_run(slack_bot):
    slack_bot.slash(OVER_BUDGET.format(name="big"))
    exp = wait_for(lambda: slack_bot.experiment("big"), what="the launch")
    assert exp.state == State.PENDING_APPROVAL
    request = approval_request(slack_bot)
    assert "$50.00" in str(request.blocks) and "<@UOWNER>" in str(request.blocks)
    buttons = [e for b in request.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == [ActionId.APPROVE, ActionId.DENY]
    assert "confirm" in buttons[0]

    slack_bot.press(ActionId.APPROVE, exp.launch_id, user="UINTRUDER")
    refusal = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="the refusal")
    assert "approvers" in refusal[0].payload["text"] and refusal[0].payload["response_type"] == "ephemeral"
    time.sleep(0.3)
    assert slack_bot.experiment("big").state == State.PENDING_APPROVAL

    slack_bot.press(ActionId.APPROVE, exp.launch_id, user="UAPPROVER")
    wait_for(lambda: slack_bot.experiment("big").state == State.SUCCEEDED, what="the approved launch to run")
    decided = wait_for(lambda: (m := slack_bot.slack_api.message(APPROVALS, request.ts)) and m.edits and m,
                       what="the request to show the decision")
    assert "Approved by <@UAPPROVER>" in str(decided.blocks)
    assert not any(b["type"] == "actions" for b in decided.blocks)
    parent = [m for m in slack_bot.slack_api.messages(CHANNEL) if not m.thread_ts][0]
    replies = " ".join(m.text for m in slack_bot.slack_api.messages(CHANNEL, thread_ts=parent.ts))
    assert "waiting for approval" in replies and "approved by <@UAPPROVER>" in replies
    with slack_bot.bot.uow_factory() as uow:
        assert [(e["actor"], e["action"]) for e in uow.audit.entries(experiment_id=exp.id)] == [("UAPPROVER", "approve")]


def test_an_over_budget_slash_launch_says_it_waits_for_an_approver(slack_bot):
    slack_bot.slash(OVER_BUDGET.format(name="waits"))
    said = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="the launch reply")
    text = said[-1].payload["text"]
    assert "waits for an approver" in text and "Launched" not in text


def test_an_approver_can_deny(slack_bot):
    slack_bot.slash(OVER_BUDGET.format(name="denied"))
    exp = wait_for(lambda: slack_bot.experiment("denied"), what="the launch")
    request = approval_request(slack_bot)
    slack_bot.press(ActionId.DENY, exp.launch_id, user="UAPPROVER")
    wait_for(lambda: slack_bot.experiment("denied").state == State.REJECTED, what="the denial")
    decided = wait_for(lambda: (m := slack_bot.slack_api.message(APPROVALS, request.ts)) and m.edits and m,
                       what="the request to show the decision")
    assert "denied by <@UAPPROVER>" in str(decided.blocks)


def test_budget_subcommands(slack_bot):
    slack_bot.slash("budget")
    shown = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="budgets")
    assert "project nlp" in shown[0].payload["text"] and "$40.00" in shown[0].payload["text"]
    slack_bot.slash("budget set project nlp 1000", user="UOWNER")  # not an admin
    refused = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="refusal")
    assert "only admins" in refused[0].payload["text"]
    slack_bot.slash("budget set project nlp 1000", user="UADMIN")
    changed = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="new budget")
    assert "$1,000.00" in changed[0].payload["text"]
    slack_bot.slash(OVER_BUDGET.format(name="fits-now"))
    wait_for(lambda: (e := slack_bot.experiment("fits-now")) and e.state != State.PENDING_APPROVAL, what="a start")
    slack_bot.slash("cost --days 2")
    report = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="cost report")
    assert "Spend over the last 2 days" in report[0].payload["text"]


def test_an_unanswered_request_expires_as_denied_and_says_so(tmp_path, slack_api):
    config = tmp_path / "expbot.toml"
    config.write_text('[budgets]\nprojects = { nlp = 40.0 }\napproval_ttl_hours = 0.0001\n')  # 0.36 s
    bot = SlackBot(tmp_path / "data", slack_api, config_file=str(config), slack_approvers="UAPPROVER",
                   slack_approvals_channel=APPROVALS)
    try:
        bot.slash(OVER_BUDGET.format(name="forgotten"))
        wait_for(lambda: bot.experiment("forgotten"), what="the launch")
        request = approval_request(bot)
        # serve expires it at its time to live (the minutely sweep would too, later)
        exp = wait_for(lambda: (e := bot.experiment("forgotten")) and e.state == State.REJECTED and e,
                       timeout=30, what="the expiry")
        assert "expired" in exp.state_reason
        decided = wait_for(lambda: (m := bot.slack_api.message(APPROVALS, request.ts)) and m.edits and m,
                           what="the request to show the expiry")
        assert "nobody answered in time" in str(decided.blocks)
    finally:
        bot.close()


def test_app_home_shows_month_to_date_spend(slack_bot):
    slack_bot.event({"type": "app_home_opened", "user": "UOWNER", "tab": "home"})
    published = wait_for(lambda: slack_bot.slack_api.calls_to("views.publish"), what="views.publish")
    assert "You have spent *$0.00* on GPUs" in str(published[0].args["view"])
