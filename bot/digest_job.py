"""Wiring of the daily digest: the scheduled job, and `expbot digest`."""
from __future__ import annotations

import os
import socket
from datetime import date, datetime, time
from pathlib import Path

from adapters.db.spend_days import SpendDays
from bot.container import Expbot
from bot.digest import (
    IdleSource,
    build_digest_data,
    chart_for,
    due_day,
    publish_digest,
    render_for_terminal,
    run_daily_digest,
)
from core.digest import compose_digest
from core.errors import ExpbotError


def project_budgets(bot: Expbot) -> dict[str, float]:
    """Project budgets in force: configured ones, overridden by those admins set."""
    with bot.uow_factory() as uow:
        overrides = uow.budgets.overrides()
    return {**bot.budgets.projects, **{name: v for (scope, name), v in overrides.items() if scope == "project"}}


def idle_source(bot: Expbot) -> IdleSource:
    """Idle GPU-hours for a window, costed at the window's average price per GPU-hour.

    Approximate: the idle table keeps one running total per experiment, so an experiment that was
    idle before the window and is still active counts whole.
    """

    def idle(start: datetime, end: datetime) -> tuple[float, float]:
        hours = bot.idle_states.total_idle_gpu_hours(since=start)
        with bot.uow_factory() as uow:
            rows = uow.costs.spend_by("project", start=start, end=end, now=bot.clock.now())
        gpu_hours = sum(r.gpu_hours for r in rows)
        per_gpu_hour = sum(r.cost for r in rows) / gpu_hours if gpu_hours else 0.0
        return hours, hours * per_gpu_hour

    return idle


def _replica() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_digest_job(bot: Expbot) -> list[date]:
    """The scheduled job: post whatever digest is due and not yet posted (once per day overall)."""
    settings = bot.settings
    if bot.slack_client is None or not settings.slack_digest_channel:
        return []
    return run_daily_digest(
        session_factory=bot.session_factory, client=bot.slack_client, channel=settings.slack_digest_channel,
        prices=bot.prices, budgets=project_budgets(bot), tz=bot.budgets.timezone, now=bot.clock.now(),
        replica=_replica(), post_at=time.fromisoformat(settings.digest_time),
        catch_up_all=settings.digest_catch_up_all, idle=idle_source(bot), kept=SpendDays(bot.session_factory),
    )


def digest_command(bot: Expbot, day: str | None, dry_run: bool, chart: Path | None) -> str:
    """`expbot digest`: print (with --dry-run) or post one day's digest; returns what to print."""
    now, tz = bot.clock.now(), bot.budgets.timezone
    try:
        when = date.fromisoformat(day) if day else due_day(now, tz)
    except ValueError:
        raise ExpbotError(f"--date expects a day like 2026-11-21, got {day!r}") from None
    kept = SpendDays(bot.session_factory)
    data = build_digest_data(bot.session_factory, bot.prices, project_budgets(bot), tz, when, now,
                             idle=idle_source(bot), kept=kept)
    if chart is not None:
        png = chart_for(data)
        if png:
            try:
                chart.write_bytes(png)
            except OSError as e:
                raise ExpbotError(f"cannot write the chart to {chart}: {e.strerror or e}") from e
    if dry_run:
        return render_for_terminal(compose_digest(data, bot.prices))
    if bot.slack_client is None or not bot.settings.slack_digest_channel:
        raise ExpbotError("posting needs EXPBOT_SLACK_BOT_TOKEN and EXPBOT_SLACK_DIGEST_CHANNEL (or use --dry-run)")
    posted = publish_digest(
        when, session_factory=bot.session_factory, client=bot.slack_client, channel=bot.settings.slack_digest_channel,
        prices=bot.prices, budgets=project_budgets(bot), tz=tz, now=now, replica=_replica(),
        idle=idle_source(bot), kept=kept,
    )
    return f"digest for {when} posted" if posted else f"the digest for {when} was posted already"
