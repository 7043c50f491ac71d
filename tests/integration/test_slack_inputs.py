"""Slash-command arguments that used to be accepted silently: refused with a reason, nothing stored."""
from __future__ import annotations

import pytest

from tests.integration.slack_harness import SlackBot, slack_bot  # noqa: F401  (fixture)
from tests.polling import wait_for

pytestmark = pytest.mark.slow




def reply(slack_bot: SlackBot, text: str, user: str = "UOWNER") -> str:
    slack_bot.slash(text, user=user)
    said = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what=f"the reply to {text!r}")
    assert said[-1].payload["response_type"] == "ephemeral"
    return said[-1].payload["text"]


def stored_budgets(slack_bot: SlackBot) -> dict:
    with slack_bot.bot.uow_factory() as uow:
        return uow.budgets.overrides()


@pytest.mark.parametrize("text, says", [
    ("budget set user @bob 100", "member ID"),  # should_escape is off: "@bob" names nobody
    ("budget set user <@> 10", "member ID"),
    ("budget set project NLP 100", "lowercase"),
    ("budget set project nlp inf", "zero or more"),
    ("budget set project nlp 1e309", "zero or more"),
])
def test_a_budget_that_could_never_apply_is_refused(slack_bot, text, says):
    assert says in reply(slack_bot, text, user="UADMIN")
    assert stored_budgets(slack_bot) == {}


def test_a_user_budget_is_keyed_by_the_mentioned_members_id(slack_bot):
    assert "$500.00" in reply(slack_bot, "budget set user <@UBOB|bob> 500", user="UADMIN")
    assert "$70.00" in reply(slack_bot, "budget set user UCAROL 70", user="UADMIN")
    assert stored_budgets(slack_bot) == {("user", "UBOB"): 500.0, ("user", "UCAROL"): 70.0}


@pytest.mark.parametrize("text", ["list -a", "list extra", "list --all mine", "list nlp --project nlp"])
def test_list_refuses_arguments_it_does_not_know(slack_bot, text):
    said = reply(slack_bot, text)
    assert "unknown argument" in said and "usage: list" in said


def test_an_experiment_may_be_called_launch(slack_bot):
    assert "Launching launch" in slack_bot.slash("launch launch -- python -c pass").text
    wait_for(lambda: slack_bot.experiment("launch"), what="the experiment named launch")


def test_list_project_needs_a_name_not_another_option(slack_bot):
    assert "--project needs a project name" in reply(slack_bot, "list --project --all")
