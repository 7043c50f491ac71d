"""The Web API client reports each call's method and outcome, and every 429, against the local Slack Web API."""
from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from adapters.slack_client import make_web_client
from tests.slack.fixtures import slack_api  # noqa: F401  (fixture)


def test_calls_are_observed_by_method_and_outcome_and_429s_each_time(slack_api):  # noqa: F811
    seen: list[tuple[str, str]] = []
    client = make_web_client(slack_api.bot_token, slack_api.base_url, observe=lambda m, o: seen.append((m, o)))
    client.chat_postMessage(channel="C0RUNS", text="hello")
    slack_api.rate_limit("chat.postMessage", times=1, retry_after=0)
    client.chat_postMessage(channel="C0RUNS", text="after one 429")  # retried, then ok
    slack_api.refuse_channel("C0NOPE")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0NOPE", text="refused")
    assert seen == [
        ("chat.postMessage", "ok"),
        ("chat.postMessage", "rate_limited"), ("chat.postMessage", "ok"),
        ("chat.postMessage", "error"),
    ]
    # The 429 was retried by the client, as before: Slack saw the message twice, delivered once.
    assert [c.method for c in slack_api.calls].count("chat.postMessage") == 4


def test_without_an_observer_the_client_is_the_plain_one(slack_api):  # noqa: F811
    client = make_web_client(slack_api.bot_token, slack_api.base_url)
    assert type(client).__name__ == "WebClient"
    assert client.chat_postMessage(channel="C0RUNS", text="hello")["ok"]
