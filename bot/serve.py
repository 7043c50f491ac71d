"""`expbot serve`: the supervisor loop, the outbox relay and Slack (when configured), until SIGTERM."""
from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from bot.bootstrap import Expbot, idle_metrics
from core import commands
from core.budget_alerts import due_alerts
from core.idle_job import check_idle
from core.relay import deliver_pending

log = logging.getLogger("expbot.serve")


def run_forever(bot: Expbot, stop: threading.Event | None = None, on_ready: Callable[[dict], None] | None = None) -> None:
    """Supervise, relay events and serve Slack until stopped; running attempts outlive a restart."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _handle_signals(stop)
    settings = bot.settings
    scheduler = BackgroundScheduler(timezone="UTC")
    relay = scheduler.add_job(
        deliver_pending, "interval", seconds=settings.relay_interval_seconds,
        args=(bot.uow_factory, bot.notifier, bot.clock), id="outbox-relay", max_instances=1, coalesce=True,
    )
    scheduler.start()

    scheduler.add_job(bot.bus.handle, "interval", minutes=1, args=(commands.ExpireApprovals(),),
                      id="expire-approvals", max_instances=1, coalesce=True)
    scheduler.add_job(send_budget_alerts, "interval", minutes=5, args=(bot,), id="budget-alerts",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))

    if bot.slack_client is not None and settings.slack_digest_channel:
        from bot.digest_job import run_digest_job  # matplotlib loads only when a digest is configured

        scheduler.add_job(run_digest_job, "interval", minutes=10, args=(bot,), id="daily-digest",
                          max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    if hasattr(bot.prices, "refresh"):  # OpenCost prices: first refresh at once, then periodically
        scheduler.add_job(bot.prices.refresh, "interval", seconds=settings.opencost_refresh_seconds,
                          id="opencost-prices", max_instances=1, coalesce=True,
                          next_run_time=datetime.now(timezone.utc))
    metrics = idle_metrics(bot)
    scheduler.add_job(check_idle, "interval", seconds=settings.idle_check_seconds, id="idle-check",
                      args=(bot.uow_factory, bot.idle_states, metrics, bot.clock, bot.idle_config, bot.bus),
                      max_instances=1, coalesce=True)
    if hasattr(metrics, "sample_now"):  # NVML keeps its own readings: sample every minute
        scheduler.add_job(metrics.sample_now, "interval", minutes=1, id="nvml-sample", max_instances=1, coalesce=True)

    def relay_now(_event: object = None) -> None:
        # A launch from Slack should reach its thread at once, not at the next tick.
        relay.modify(next_run_time=datetime.now(timezone.utc))

    bot.bus.subscribe_all(relay_now)
    stop_slack = _start_slack(bot) if settings.slack_enabled else None
    log.info(
        "expbot serving: database %s, local runner in %s with %d GPU(s), Slack %s",
        _redact(settings.resolved_database_url()), settings.runs_dir(), settings.resolved_local_gpus(),
        "on" if stop_slack else "off (no EXPBOT_SLACK_BOT_TOKEN)",
    )
    if on_ready:
        on_ready({"http_port": getattr(stop_slack, "port", None)})
    try:
        bot.supervisor.run(stop, settings.resync_interval_seconds)
    finally:
        if stop_slack:
            stop_slack()
        # Do not wait for a job stuck on a slow Slack or Prometheus call: every job is safe to redo.
        scheduler.shutdown(wait=False)
        deliver_pending(bot.uow_factory, bot.notifier, bot.clock)
        log.info("expbot stopped; running attempts carry on and are adopted on the next start")


def _handle_signals(stop: threading.Event) -> None:
    """SIGTERM / SIGINT stop serve cleanly; SIGUSR1 dumps every thread's stack to stderr (for hangs)."""

    def stop_now(signum: int) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    fired: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # A handler runs inside whatever the main thread was doing, possibly inside stop.set()
        # itself when a second signal follows the first (make forwards SIGTERM on top of the
        # group's): taking Event's non-reentrant lock here deadlocked serve. A thread does it, once.
        if fired:
            return
        fired.append(signum)
        threading.Thread(target=stop_now, args=(signum,), name="stop", daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    # A parent may hand us these blocked (a mask is inherited across exec); a daemon must hear them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def send_budget_alerts(bot: Expbot) -> None:
    """Post every budget alert that is due (each threshold once a month) to its project's channel."""
    for alert in due_alerts(bot.uow_factory, bot.budgets, bot.clock):
        text = alert.text(bot.prices)
        channel = bot.budgets.channels.get(alert.name) if alert.scope == "project" else None
        channel = channel or bot.settings.slack_default_channel
        if bot.slack_client is None or not channel:
            log.warning("budget alert: %s", text)
            continue
        try:
            bot.slack_client.chat_postMessage(channel=channel, text=text)
        except Exception:  # the alert is claimed already: log it rather than lose it silently
            log.exception("could not post budget alert to %s: %s", channel, text)


def _start_slack(bot: Expbot):
    from bot.slack.runtime import start_slack  # Slack's libraries load only when Slack is on

    return start_slack(bot)


def _redact(url: str) -> str:
    """Hide a password in a database URL before logging it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
