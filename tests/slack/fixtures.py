"""Fixtures for Slack tests: ``slack_api`` is a started ``FakeSlackApi`` (stopped afterwards)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.slack.fake_slack_api import FakeSlackApi

BOT_TOKEN = "xoxb-expbot-test-token"


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    """A fresh local Slack Web API; use ``slack_api.bot_token`` and ``slack_api.base_url``."""
    server = FakeSlackApi(bot_token=BOT_TOKEN).start()
    try:
        yield server
    finally:
        server.stop()
