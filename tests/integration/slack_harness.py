"""Drive the real Bolt app over real HTTP with requests signed exactly as Slack signs them."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from bot.bootstrap import Expbot, bootstrap
from bot.config import Settings
from bot.serve import run_forever
from tests.slack.fake_slack_api import FakeSlackApi

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0LAUNCH"


def sign(body: str, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature: HMAC-SHA256 of `v0:{timestamp}:{raw body}`."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


class SlackBot:
    """`expbot serve` in-process with Slack over HTTP, wired to a local Slack Web API."""

    def __init__(self, data_dir: Path, slack_api: FakeSlackApi, **overrides: Any) -> None:
        self.slack_api = slack_api
        settings = {
            "data_dir": data_dir, "local_gpus": 2, "backoff_base_seconds": 0.1, "backoff_cap_seconds": 0.5,
            "resync_interval_seconds": 0.2, "relay_interval_seconds": 0.2, "stop_grace_seconds": 2,
            "slack_bot_token": slack_api.bot_token, "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack_api.base_url, "http_host": "127.0.0.1", "http_port": 0,
            "slack_admins": "UADMIN",
        } | overrides
        self.bot: Expbot = bootstrap(Settings(**settings))
        self._stop = threading.Event()
        ready: dict[str, Any] = {}
        started = threading.Event()
        self._thread = threading.Thread(
            target=run_forever, args=(self.bot, self._stop), kwargs={"on_ready": lambda info: (ready.update(info), started.set())},
            daemon=True,
        )
        self._thread.start()
        assert started.wait(30), "expbot serve did not start"
        self.url = f"http://127.0.0.1:{ready['http_port']}/slack/events"
        self.http = httpx.Client(timeout=10)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.http.close()

    # --- requests --------------------------------------------------------------------------------
    def post(self, body: str, content_type: str, *, timestamp: str | None = None, signature: str | None = None,
             headers: dict[str, str] | None = None, extra_headers: dict[str, str] | None = None) -> httpx.Response:
        """POST a raw body signed as Slack would (or with the given forged parts), plus `extra_headers`."""
        ts = timestamp or str(int(time.time()))
        sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature or sign(body, ts)} | (extra_headers or {})
        if headers is not None:
            sent = headers
        return self.http.post(self.url, content=body.encode(), headers=sent)

    def slash(self, text: str, user: str = "UOWNER", trigger_id: str | None = None, **kw: Any) -> httpx.Response:
        """Send `/experiment {text}` shaped like Slack's slash-command payload."""
        self.last_response_url = self.slack_api.new_response_url(channel=CHANNEL)
        form = {
            "token": "deprecated-verification-token", "team_id": "T000FAKE", "team_domain": "lab",
            "channel_id": CHANNEL, "channel_name": "ml-runs", "user_id": user, "user_name": user.lower(),
            "command": "/experiment", "text": text, "api_app_id": "A0EXPBOT", "is_enterprise_install": "false",
            "response_url": self.last_response_url, "trigger_id": trigger_id or self.slack_api.new_trigger_id(),
        }
        return self.post(urlencode(form), "application/x-www-form-urlencoded", **kw)

    def interaction(self, payload: dict[str, Any], **kw: Any) -> httpx.Response:
        """Send an interactivity payload (block_actions, view_submission) as Slack does: form field `payload`."""
        return self.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded", **kw)

    def press(self, action_id: str, value: str, user: str) -> httpx.Response:
        """A user pressing a button in the experiment's thread parent."""
        self.last_response_url = self.slack_api.new_response_url(channel=CHANNEL)
        return self.interaction({
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T000FAKE"},
            "api_app_id": "A0EXPBOT", "token": "deprecated", "trigger_id": self.slack_api.new_trigger_id(),
            "team": {"id": "T000FAKE", "domain": "lab"}, "channel": {"id": CHANNEL, "name": "ml-runs"},
            "container": {"type": "message", "message_ts": "1.0", "channel_id": CHANNEL},
            "response_url": self.last_response_url,
            "actions": [{"action_id": action_id, "block_id": "actions", "type": "button", "value": value,
                         "action_ts": str(time.time())}],
        })

    def submit_view(self, view_id: str, values: dict[str, Any], user: str = "UOWNER") -> httpx.Response:
        """Submit the launch modal."""
        return self.interaction({
            "type": "view_submission", "team": {"id": "T000FAKE"}, "user": {"id": user, "team_id": "T000FAKE"},
            "api_app_id": "A0EXPBOT", "token": "deprecated", "trigger_id": self.slack_api.new_trigger_id(),
            "view": {"id": view_id, "type": "modal", "callback_id": "launch_modal", "private_metadata": CHANNEL,
                     "state": {"values": values}, "hash": "1.abc"},
        })

    def event(self, event: dict[str, Any], event_id: str | None = None, **kw: Any) -> httpx.Response:
        """An Events API callback (JSON)."""
        body = json.dumps({
            "token": "deprecated", "team_id": "T000FAKE", "api_app_id": "A0EXPBOT", "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
            "event": event,
        })
        return self.post(body, "application/json", **kw)

    # --- state -----------------------------------------------------------------------------------
    def experiments(self):
        with self.bot.uow_factory() as uow:
            return uow.experiments.list()

    def experiment(self, name: str):
        with self.bot.uow_factory() as uow:
            return uow.experiments.get_by_name(name)


@pytest.fixture
def slack_bot(tmp_path: Path, slack_api: FakeSlackApi) -> Iterator[SlackBot]:
    """expbot with Slack on, against the local Slack Web API; closed afterwards."""
    bot = SlackBot(tmp_path / "data", slack_api)
    yield bot
    bot.close()
