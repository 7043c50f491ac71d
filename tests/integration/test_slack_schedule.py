"""serve's timed Slack posts: the digest at its configured minute in its time zone (a real serve, real scheduler)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.digest import format_day
from tests.integration.cost_fixtures import ran
from tests.integration.slack_harness import SlackBot
from tests.polling import wait_for

pytestmark = pytest.mark.slow
DIGESTS = "C0DIGEST"
TZ = "Asia/Kolkata"  # UTC+5:30: a minute that is not UTC's


def next_minute(tz: ZoneInfo, at_least: float = 20.0) -> datetime:
    """The start of the next local minute at least `at_least` seconds away."""
    soon = datetime.now(tz) + timedelta(seconds=at_least)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_the_digest_is_posted_at_its_minute_and_not_at_start(tmp_path, slack_api):
    zone = ZoneInfo(TZ)
    minute = next_minute(zone)
    config = tmp_path / "expbot.toml"
    config.write_text(f'[budgets]\ntimezone = "{TZ}"\n')
    bot = SlackBot(tmp_path / "data", slack_api, config_file=str(config), slack_digest_channel=DIGESTS,
                   digest_time=minute.strftime("%H:%M"))
    try:
        three_days_ago = datetime.now(timezone.utc) - timedelta(days=3)
        with bot.bot.uow_factory() as uow:  # expbot has been in use for days: yesterday's digest is due
            uow.experiments.add(ran("old", [(three_days_ago, three_days_ago + timedelta(hours=2), 4.0)]))
            uow.commit()
        # The monotonic time (the fake Slack API's clock) at which the configured minute begins.
        minute_mono = time.monotonic() + (minute.timestamp() - time.time())
        posted = wait_for(
            lambda: [c for c in slack_api.calls_to("chat.postMessage") if c.args.get("channel") == DIGESTS],
            timeout=(minute.timestamp() - time.time()) + 60, what=f"the digest at {minute:%H:%M} {TZ}",
        )
        assert posted[0].time >= minute_mono - 0.5, "posted before its minute"
        yesterday = (minute.date() - timedelta(days=1))
        assert format_day(yesterday) in posted[0].args["text"]
    finally:
        bot.close()
