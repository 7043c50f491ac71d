"""`expbot serve`: the supervisor loop, the outbox relay and Slack (when configured), until SIGTERM."""
from __future__ import annotations

import faulthandler
import gc
import functools
import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from bot.bootstrap import Expbot, idle_metrics, shown_url
from bot.serve_presence import hold_local_data_dir, start_heartbeat
from bot.timed_jobs import expire_on_time, schedule_digest
from core import commands
from core.events import Event, ExperimentLaunched, LaunchApproved, StopRequested
from core.failures import FailureLog
from core.idle_job import HangWatch, check_idle
from core.relay import DeliveryRetry, deliver_pending

log = logging.getLogger("expbot.serve")
_RELAY_BATCH = 100


def run_forever(bot: Expbot, stop: threading.Event | None = None, on_ready: Callable[[dict], None] | None = None,
                mount: Callable[[Any], Any] | None = None) -> None:
    """Serve Slack and progress reports; supervise and schedule while leader; until stopped.

    Running attempts outlive a restart. Under leader election a replica that loses its Lease stops
    serving and exits non-zero (as client-go's controllers do): its orchestrator restarts it as a follower.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _handle_signals(stop)
    release = hold_local_data_dir(bot.settings)  # before anything listens or supervises
    _freeze_startup_objects()  # before anything listens: its one full collection delays no request
    stop_http = _start_http(bot, mount)  # mount: the Slack sandbox's routes, when it stands in for Slack
    log.info(
        "expbot serving: database %s, %s, Slack %s",
        shown_url(bot.settings.resolved_database_url()), _describe_backend(bot),
        _describe_slack(bot),
    )
    if on_ready:
        on_ready({"http_port": getattr(stop_http, "port", None)})
    try:
        if bot.elector is None:
            lead(bot, stop)
        elif not _lead_while_elected(bot, stop):
            raise SystemExit("lost the leader Lease: exiting so a fresh replica follows the new leader")
    finally:
        if stop_http:
            stop_http()
        release()
        log.info("expbot stopped; running attempts carry on and are adopted on the next start")


def _lead_while_elected(bot: Expbot, stop: threading.Event) -> bool:
    """Follow until elected, then lead until stopped (True) or until the Lease is lost (False)."""
    elected, lost = threading.Event(), threading.Event()
    duty = threading.Event()  # set when leading must end: stop asked for, or Lease lost
    turn = threading.Event()  # wakes the follower: elected, stop asked for, or the election over

    def started_leading() -> None:
        elected.set()
        turn.set()

    def stopped_leading() -> None:
        if not stop.is_set():  # the elector also calls this when it resigns on a clean stop
            lost.set()
        duty.set()

    def campaign() -> None:
        # The elector's run ends on stop, or for good once this replica stopped leading (it never
        # campaigns again: a fresh process must). Either way leading ends with it.
        try:
            bot.elector.run(stop, started_leading, stopped_leading)
        finally:
            if not stop.is_set():
                lost.set()
            duty.set()
            turn.set()

    def relay_stop() -> None:
        stop.wait()
        duty.set()
        turn.set()

    election = threading.Thread(target=campaign, name="leader-election", daemon=True)
    threading.Thread(target=relay_stop, name="stop-relay", daemon=True).start()
    election.start()
    log.info("following: waiting for the %s Lease", bot.settings.lease_name)
    turn.wait()
    if elected.is_set() and not (stop.is_set() or lost.is_set()):
        log.info("elected leader: supervising and running scheduled jobs")
        lead(bot, duty)
    stop.set()  # the elector releases the Lease on stop, so the next leader takes over at once
    election.join(timeout=10)
    return not lost.is_set()


def lead(bot: Expbot, stop: threading.Event) -> None:
    """The leader's duties until `stop`: watch the cluster, supervise, relay events, scheduled jobs."""
    settings = bot.settings
    start_watch = getattr(bot.backend, "start", None)
    if start_watch is not None:
        start_watch()  # list-then-watch: status() must not answer before the first list is in
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    _schedule_jobs(bot, scheduler)
    heartbeat = start_heartbeat(bot, scheduler)  # the CLI tells launches nothing runs them when it stops
    bot.bus.subscribe_all(expire_on_time(bot, scheduler))
    relay_woken = threading.Event()

    def on_event(event: Event) -> None:
        # A launch from Slack should reach its thread at once, not at the next tick; one taken here
        # (Slack, the idle job) is started or stopped at once, without waiting for the relay's Slack calls.
        relay_woken.set()
        _wake_supervisor(bot, event)

    bot.bus.subscribe_all(on_event)
    relay = threading.Thread(target=_relay, args=(bot, stop, relay_woken), name="outbox-relay", daemon=True)
    relay.start()
    threading.Thread(target=_interrupt_on_stop, args=(bot, stop), name="stop-backend", daemon=True).start()
    resync = settings.k8s_resync_seconds if settings.backend == "kubernetes" else settings.resync_interval_seconds
    if bot.telemetry is not None:
        bot.telemetry.leading(True)  # expbot_leader, and /healthz starts watching the supervisor's passes
    try:
        bot.supervisor.run(stop, resync)
    finally:
        if bot.telemetry is not None:
            bot.telemetry.leading(False)
        # Do not wait for a job stuck on a slow Slack or Prometheus call: every job is safe to redo.
        scheduler.shutdown(wait=False)
        heartbeat.stop()
        close_watch = getattr(bot.backend, "close", None)
        if close_watch is not None:
            close_watch()
        relay_woken.set()
        relay.join(timeout=10)  # its last round delivers what the final pass stored


def _freeze_startup_objects() -> None:
    """Keep what start-up built (modules, the Slack app, settings: ~100,000 objects) out of full collections.

    They live as long as serve does, yet every full collection walked them: ~110 ms of CPU with the
    GIL held, which every Slack ack in flight waited out (benchmarks/ack_latency.py; ~25 ms frozen).
    """
    gc.collect()  # start-up's garbage first: frozen objects are never collected
    gc.freeze()


def _interrupt_on_stop(bot: Expbot, stop: threading.Event) -> None:
    """Once stop is set, end the supervisor's wait now, not at its next resync (up to 30 s)."""
    stop.wait()
    close = getattr(bot.backend, "close", None)
    if close is not None:
        close()  # Kubernetes: shuts the watch streams (the supervisor's pump returns at once)
    bot.supervisor.interrupt()


def _wake_supervisor(bot: Expbot, event: Event) -> None:
    """Launches, approvals and stops are acted on now rather than at the next full pass."""
    if isinstance(event, (ExperimentLaunched, LaunchApproved, StopRequested)):
        bot.supervisor.wake(event.experiment_id)


def _relay(bot: Expbot, stop: threading.Event, woken: threading.Event) -> None:
    """Deliver the outbox every relay interval and whenever woken, until a last round after `stop`."""

    def start_at_once(event: Event) -> None:
        # Launches and stops reach the leader through the outbox whichever replica or CLI took
        # them: act now rather than at the next full pass (up to k8s_resync_seconds away).
        _wake_supervisor(bot, event)

    failures = FailureLog(log, "outbox relay round")
    retry = DeliveryRetry()  # a refused event is tried again with backoff, its refusal logged once a try
    while True:
        last_round = stop.is_set()
        woken.clear()
        try:
            while deliver_pending(bot.uow_factory, bot.notifier, bot.clock, _RELAY_BATCH, observe=start_at_once,
                                  retry=retry) == _RELAY_BATCH:
                pass  # a full batch: more are waiting
        except Exception as e:  # e.g. a sick database: the next round retries
            failures.failed(e)
        else:
            failures.succeeded()
        if last_round:
            return
        woken.wait(bot.settings.relay_interval_seconds)


def _schedule_jobs(bot: Expbot, scheduler: BackgroundScheduler) -> None:
    settings = bot.settings
    scheduler.add_job(bot.bus.handle, "interval", minutes=1, args=(commands.ExpireApprovals(),),
                      id="expire-approvals", max_instances=1, coalesce=True)
    scheduler.add_job(bot.bus.handle, "interval", minutes=5, args=(commands.SendBudgetAlerts(),),
                      id="budget-alerts", max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    schedule_digest(bot, scheduler)
    if hasattr(bot.prices, "refresh"):  # OpenCost prices: first refresh at once, then periodically
        scheduler.add_job(bot.prices.refresh, "interval", seconds=settings.opencost_refresh_seconds,
                          id="opencost-prices", max_instances=1, coalesce=True,
                          next_run_time=datetime.now(timezone.utc))
    metrics = idle_metrics(bot)
    # Stuck attempts are found by the idle job and ended by the supervisor, in its own thread.
    hangs = HangWatch(progress=functools.partial(_last_progress, bot), end_attempt=bot.supervisor.end_attempt_later)
    scheduler.add_job(check_idle, "interval", seconds=settings.idle_check_seconds, id="idle-check",
                      args=(bot.uow_factory, bot.idle_states, metrics, bot.clock, bot.idle_config, bot.bus, hangs),
                      max_instances=1, coalesce=True)
    if hasattr(metrics, "sample_now"):  # NVML keeps its own readings: sample every minute
        scheduler.add_job(metrics.sample_now, "interval", minutes=1, id="nvml-sample", max_instances=1, coalesce=True)


def _last_progress(bot: Expbot, experiment_id: str, attempt: int) -> datetime | None:
    """The attempt's newest checkpoint or heartbeat as its backend reports it."""
    status = bot.backend.status(experiment_id, attempt)
    return status.last_progress_at if status is not None else None


def _start_http(bot: Expbot, mount: Callable[[Any], Any] | None = None) -> Callable[[], None] | None:
    """Slack (HTTP or Socket Mode), the progress-report endpoint, /metrics and the probes, on every replica."""
    from bot.telemetry.wiring import operations

    ops = operations(bot)
    report = None
    if bot.settings.report_secret is not None:
        from adapters.db.progress import SqlProgressStore
        from bot.report_endpoint import report_app

        report = report_app(SqlProgressStore(bot.session_factory), bot.settings.report_secret.get_secret_value(), bot.clock)
    if bot.settings.slack_enabled:
        from bot.slack.runtime import start_slack  # Slack's libraries load only when Slack is on

        return start_slack(bot, report, ops, mount)
    from bot.http_server import HttpServer, Stopper, routes

    server = HttpServer(routes(None, report, ops), bot.settings.http_host, bot.settings.http_port).start()
    return Stopper(server.stop, server.port)


def _describe_backend(bot: Expbot) -> str:
    settings = bot.settings
    if settings.backend == "kubernetes":
        namespace = getattr(getattr(bot.backend, "config", None), "namespace", "?")
        election = f", leader election on Lease {settings.lease_name}" if bot.elector else ""
        return f"Kubernetes namespace {namespace}{election}"
    return f"local runner in {settings.runs_dir()} with {settings.resolved_local_gpus()} GPU(s)"


def _describe_slack(bot: Expbot) -> str:
    settings = bot.settings
    if not settings.slack_enabled:
        return "off (no EXPBOT_SLACK_BOT_TOKEN)"
    # Another Web API than Slack's (the sandbox page's, a test's) is named: "on" alone would claim Slack.
    return f"on through the Web API at {settings.slack_api_url} (not slack.com)" if settings.slack_api_url else "on"


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
