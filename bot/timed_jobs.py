"""When serve's timed jobs run: the digest at its minute in its time zone, an approval's expiry at its TTL."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.container import Expbot
from core import commands
from core.events import ApprovalRequested, Event

# Missed digests (serve was down, or Slack failed at the minute) are looked for this often.
MISSED_DIGEST_INTERVAL = timedelta(minutes=30)
# An expiry is acted on just after the TTL, so that "now - requested >= ttl" holds when it runs.
_EXPIRY_MARGIN = timedelta(seconds=0.5)


def digest_trigger(post_at: time | None, tz: str) -> CronTrigger:
    """Every day at the configured minute, in the configured (the budgets') time zone."""
    at = post_at or time(9, 0)
    return CronTrigger(hour=at.hour, minute=at.minute, timezone=ZoneInfo(tz))


def schedule_digest(bot: Expbot, scheduler: BaseScheduler) -> None:
    """The daily digest at its minute; a missed one (after downtime) at start and every half hour."""
    if bot.digest is None or not bot.digest.can_post:
        return
    scheduler.add_job(bot.bus.handle, digest_trigger(bot.digest.post_at, bot.digest.timezone),
                      args=(commands.PostDigest(),), id="daily-digest", max_instances=1, coalesce=True,
                      misfire_grace_time=3600)
    scheduler.add_job(bot.bus.handle, "interval", seconds=MISSED_DIGEST_INTERVAL.total_seconds(),
                      args=(commands.PostDigest(missed_only=True),), id="missed-digest", max_instances=1,
                      coalesce=True, next_run_time=datetime.now(timezone.utc))


def expire_on_time(bot: Expbot, scheduler: BaseScheduler) -> Callable[[Event], None]:
    """An event handler: a request for approval taken in this process expires at its TTL.

    The minutely sweep still expires the others (taken by the CLI or another replica).
    """

    def on_event(event: Event) -> None:
        if isinstance(event, ApprovalRequested):
            scheduler.add_job(bot.bus.handle, "date", run_date=event.expires_at + _EXPIRY_MARGIN,
                              args=(commands.ExpireApprovals(),), id=f"expire-{event.launch_id}",
                              replace_existing=True, misfire_grace_time=None)

    return on_event
