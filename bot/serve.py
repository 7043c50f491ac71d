"""`expbot serve`: the supervisor loop plus the scheduled jobs, until SIGTERM/SIGINT."""
from __future__ import annotations

import logging
import signal
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from adapters.console_notifier import ConsoleNotifier
from bot.bootstrap import Expbot
from core.relay import deliver_pending

log = logging.getLogger("expbot.serve")


def run_forever(bot: Expbot, stop: threading.Event | None = None) -> None:
    """Supervise and relay events until stopped; running attempts keep running across restarts."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    notifier = ConsoleNotifier()
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        deliver_pending, "interval", seconds=bot.settings.relay_interval_seconds,
        args=(bot.uow_factory, notifier, bot.clock), id="outbox-relay",
        max_instances=1, coalesce=True,
    )
    scheduler.start()
    settings = bot.settings
    log.info(
        "expbot serving: database %s, local runner in %s with %d GPU(s)",
        _redact(settings.resolved_database_url()), settings.runs_dir(), settings.resolved_local_gpus(),
    )
    try:
        bot.supervisor.run(stop, settings.resync_interval_seconds)
    finally:
        scheduler.shutdown(wait=True)
        deliver_pending(bot.uow_factory, notifier, bot.clock)
        log.info("expbot stopped; running attempts carry on and are adopted on the next start")


def _redact(url: str) -> str:
    """Hide a password in a database URL before logging it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
