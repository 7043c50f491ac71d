"""Posting from the CLI (`expbot digest`) into the sandbox of a running `expbot serve`.

While its sandbox is on, serve keeps `sandbox.json` in the data directory (readable by its user
only): the Web API's URL, the bot token it made up, its pid. A CLI command that posts and has no
Slack token of its own posts there, as it would to Slack.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
from pathlib import Path

from pydantic import SecretStr

from bot.config import Settings
from bot.sandbox.config import DIGEST_CHANNEL, SandboxWiring

FILE = "sandbox.json"


def publish(wiring: SandboxWiring) -> Path:
    """Tell CLI commands on this data directory where this serve's sandbox answers (gone at exit)."""
    settings = wiring.settings
    path = settings.data_dir / FILE
    record = {"api_url": settings.slack_api_url, "bot_token": wiring.bot_token, "pid": os.getpid(),
              "digest_channel": settings.slack_digest_channel}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the token must never be readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    atexit.register(_remove, path, os.getpid())
    return path


def _remove(path: Path, pid: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == pid:  # a newer serve's file stays
            path.unlink()


def posting_settings(settings: Settings) -> Settings:
    """`settings`, or with no Slack token of its own, pointed at the sandbox of the serve running on its data dir."""
    if settings.slack_bot_token is not None or settings.slack_app_token is not None:
        return settings
    try:
        record = json.loads((settings.data_dir / FILE).read_text())
        os.kill(int(record["pid"]), 0)  # that serve is still running
    except (OSError, ValueError, KeyError, TypeError):
        return settings
    return settings.model_copy(update={
        "slack_bot_token": SecretStr(str(record["bot_token"])), "slack_api_url": str(record["api_url"]),
        "slack_digest_channel": settings.slack_digest_channel or record.get("digest_channel") or DIGEST_CHANNEL,
    })
