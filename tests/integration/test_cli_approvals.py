"""Approvals without Slack (#15.4): `expbot approve` / `expbot deny` by a configured approver (EXPBOT_USER),
audited like the Slack buttons; `status` of a waiting launch shows its numbers and who may approve."""
from __future__ import annotations

import json
import sqlite3

import pytest

from tests.integration.cli_harness import Expbot, wait_for

# One a100 costs 2.5 an hour: 2 GPUs for 10 hours (50) is over the 40 budget of project "nlp".
OVER_BUDGET = ("--project", "nlp", "--gpus", "2", "--gpu-type", "a100", "--hours", "10")


@pytest.fixture
def expbot(tmp_path):
    config = tmp_path / "expbot.toml"
    config.write_text('[budgets]\nprojects = { nlp = 40.0 }\n')
    bot = Expbot(tmp_path / "data", EXPBOT_CONFIG_FILE=str(config), EXPBOT_LOCAL_GPUS="2",
                 EXPBOT_SLACK_APPROVERS="UBOSS,carla")
    yield bot
    bot.kill_serve()


def as_user(bot: Expbot, user: str, *args: str, check: bool = True):
    saved = bot.env
    bot.env = saved | {"EXPBOT_USER": user}
    try:
        return bot.cli(*args, check=check)
    finally:
        bot.env = saved


def audit(bot: Expbot) -> list[tuple[str, str, dict]]:
    with sqlite3.connect(bot.data_dir / "expbot.db") as db:
        rows = db.execute("SELECT actor, action, detail FROM audit ORDER BY at").fetchall()
    return [(actor, action, json.loads(detail)) for actor, action, detail in rows]


def test_status_of_a_waiting_launch_shows_its_numbers_and_an_approver_lets_it_run(expbot):
    # 1 a100 for 2 hours (5) fits the budget and commits 5 of it while it is queued.
    expbot.cli("launch", "small", "--project", "nlp", "--gpus", "1", "--gpu-type", "a100", "--hours", "2", "--",
               "python", "-c", "pass")
    launched = expbot.cli("launch", "big", *OVER_BUDGET, "--", "python", "-c", "pass").stdout
    assert "big: PENDING_APPROVAL" in launched and "projected to cost up to $50.00" in launched
    nlp = "project nlp: budget $40.00, $0.00 spent this month, {} committed to running experiments - would overrun it"
    assert nlp.format("$5.00") in launched
    assert nlp.format("$5.00") in expbot.cli("status", "big").stdout
    expbot.cli("stop", "small")  # what status shows is today's numbers, not those of the request
    shown = expbot.cli("status", "big").stdout
    assert "projected to cost up to $50.00" in shown and nlp.format("$0.00") in shown
    assert "who may approve: UBOSS, carla" in shown and "`expbot approve big`" in shown
    approval = expbot.status("big")["approval"]
    assert approval["projected_cost"] == 50.0 and approval["approvers"] == ["UBOSS", "carla"]
    assert approval["budgets"] == [{"scope": "project", "name": "nlp", "limit": 40.0, "spent": 0.0, "committed": 5.0}]
    assert approval["budgets_now"] == [{"scope": "project", "name": "nlp", "limit": 40.0, "spent": 0.0,
                                        "committed": 0.0, "would_overrun": True}]

    refused = expbot.cli("approve", "big", check=False)  # EXPBOT_USER=ana is no approver
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "ana (EXPBOT_USER) is not one" in refused.stderr and "UBOSS, carla" in refused.stderr
    assert expbot.status("big")["state"] == "PENDING_APPROVAL" and [a for _, a, _ in audit(expbot)] == []

    approved = as_user(expbot, "carla", "approve", "big").stdout
    assert "approved big" in approved
    assert expbot.status("big")["state"] == "QUEUED"
    [(actor, action, detail)] = audit(expbot)  # the entry Slack's Approve button writes
    assert (actor, action, detail["experiments"]) == ("carla", "approve", ["big"])
    assert "approved by carla" in [e["text"] for e in expbot.status("big")["events"]][-1]
    expbot.serve()
    wait_for(lambda: expbot.status("big")["state"] == "SUCCEEDED", 60, "the approved launch to run")
    again = as_user(expbot, "carla", "approve", "big", check=False)
    assert again.returncode == 2 and "no longer waiting for approval" in again.stderr


def test_an_approver_denies_a_whole_sweep_with_a_reason(expbot):
    said = expbot.cli("launch", "grid", "--sweep", "lr=1,2", *OVER_BUDGET, "--", "python", "-c", "pass").stdout
    assert "sweep grid: 2 experiments" in said and "$100.00" in said
    assert "waiting for approval" in expbot.cli("status", "grid-2").stdout  # the request is the sweep's
    whole = expbot.cli("status", "grid").stdout
    assert "projected to cost up to $100.00" in whole and "`expbot approve grid`" in whole
    denied = as_user(expbot, "UBOSS", "deny", "grid", "--reason", "too dear this month").stdout
    assert "denied sweep grid (2 experiments): too dear this month" in denied
    sweep = json.loads(expbot.cli("status", "grid", "--json").stdout)
    assert sweep["counts"] == {"REJECTED": 2}
    assert [(a, act, d["reason"]) for a, act, d in audit(expbot)] == [("UBOSS", "deny", "too dear this month")]


def test_members_of_the_approver_user_group_approve_when_slack_is_on(tmp_path, slack_api):
    slack_api.add_usergroup("S0APPROVERS", ["UGROUPAPPROVER"])
    config = tmp_path / "expbot.toml"
    config.write_text('[budgets]\nprojects = { nlp = 40.0 }\n')
    bot = Expbot(tmp_path / "data", EXPBOT_CONFIG_FILE=str(config), EXPBOT_LOCAL_GPUS="2",
                 EXPBOT_SLACK_BOT_TOKEN=slack_api.bot_token, EXPBOT_SLACK_SIGNING_SECRET="s3cret",
                 EXPBOT_SLACK_API_URL=slack_api.base_url, EXPBOT_SLACK_APPROVER_GROUP="S0APPROVERS")
    bot.cli("launch", "grouped", *OVER_BUDGET, "--", "python", "-c", "pass")
    assert "members of the Slack user group S0APPROVERS" in bot.cli("status", "grouped").stdout
    refused = as_user(bot, "UOUTSIDER", "approve", "grouped", check=False)
    assert refused.returncode == 2 and "UOUTSIDER (EXPBOT_USER) is not one" in refused.stderr
    assert "approved grouped" in as_user(bot, "UGROUPAPPROVER", "approve", "grouped").stdout
    assert [(actor, action) for actor, action, _ in audit(bot)] == [("UGROUPAPPROVER", "approve")]
