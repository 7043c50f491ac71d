"""The daily digest job: gather the numbers, compose, chart, post once per day (also `expbot digest`)."""
from __future__ import annotations

import html
import logging
import re
import time as time_module
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from slack_sdk import WebClient
from sqlalchemy.orm import Session

from adapters.db.cost_queries import SqlCostQueries, daily_spend_by_project, outcome_counts, successful_in
from adapters.db.digest_runs import DigestRuns
from adapters.digest_chart import spend_chart_png
from adapters.slack_digest import post_digest
from core.cost import Prices
from core.digest import (
    CHART_DAYS,
    TOP_USERS,
    Digest,
    DigestData,
    MonthToDate,
    Outcomes,
    SpendLine,
    compose_digest,
    day_window,
    format_day,
)

log = logging.getLogger("expbot.digest")

# (start, end) of a day -> (idle GPU-hours, what they cost); supplied by the idle-GPU adapter.
IdleSource = Callable[[datetime, datetime], tuple[float, float]]


def build_digest_data(
    session_factory: Callable[[], Session],
    prices: Prices,
    budgets: dict[str, float],
    tz: str,
    day: date,
    now: datetime,
    *,
    idle: IdleSource | None = None,
) -> DigestData:
    """The numbers of `day`'s digest (days and months in time zone `tz`; running attempts accrue to `now`)."""
    start, end = day_window(day, tz)
    chart_days = [day - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    first = min(day.replace(day=1), chart_days[0])
    # One scan covers the chart's 14 days, the day before, and the month so far.
    days = [(d, *day_window(d, tz)) for d in (first + timedelta(days=n) for n in range((day - first).days + 1))]
    this_week, last_week = day_window(day - timedelta(days=6), tz)[0], day_window(day - timedelta(days=13), tz)[0]
    with session_factory() as session:
        daily = daily_spend_by_project(session, days, now)
        costs = SqlCostQueries(session)
        projects = costs.spend_by("project", start=start, end=end, now=now)
        users = costs.spend_by("owner", start=start, end=end, now=now)[:TOP_USERS]
        outcomes = outcome_counts(session, start, end)
        succeeded_this_week = successful_in(session, this_week, end)
        succeeded_last_week = successful_in(session, last_week, this_week)
    idle_hours, idle_cost = idle(start, end) if idle else (0.0, 0.0)

    month: dict[str, float] = defaultdict(float)
    for d, per_project in daily.items():
        if d >= day.replace(day=1):
            for project, cost in per_project.items():
                month[project] += cost
    for project in budgets:
        month.setdefault(project, 0.0)  # a budgeted project that spent nothing still shows its budget
    charted = sorted({p for d in chart_days for p in daily.get(d, {})})
    return DigestData(
        day=day,
        timezone=tz,
        currency=prices.currency,
        yesterday_total=sum(p.cost for p in projects),
        day_before_total=sum(daily.get(day - timedelta(days=1), {}).values()),
        month_to_date=[
            MonthToDate(project=p, spent=s, budget=budgets.get(p))
            for p, s in sorted(month.items(), key=lambda item: (-item[1], item[0]))
        ],
        projects=[SpendLine(key=p.key, cost=p.cost, gpu_hours=p.gpu_hours) for p in projects],
        top_users=[SpendLine(key=u.key, cost=u.cost, gpu_hours=u.gpu_hours) for u in users],
        idle_gpu_hours=idle_hours,
        idle_cost=idle_cost,
        outcomes=Outcomes(**outcomes),
        successful_this_week=succeeded_this_week,
        successful_last_week=succeeded_last_week,
        chart_series={p: [(d, daily.get(d, {}).get(p, 0.0)) for d in chart_days] for p in charted},
    )


# --- which days to post -------------------------------------------------------------------------
def due_day(now: datetime, tz: str, post_at: time | None = None) -> date:
    """The latest day whose digest is due: yesterday (local), or the day before while it is not yet `post_at`."""
    local = now.astimezone(ZoneInfo(tz))
    yesterday = local.date() - timedelta(days=1)
    if post_at is not None and local.time() < post_at:
        return yesterday - timedelta(days=1)
    return yesterday


def days_to_post(last_posted: str | None, due: date, catch_up_all: bool = False) -> list[date]:
    """The days to post now: the due day, unless posted; after downtime only the latest missed day.

    With `catch_up_all`, every day missed since the last one posted, oldest first.
    """
    if last_posted is None:
        return [due]
    last = date.fromisoformat(last_posted)
    if last >= due:
        return []
    if not catch_up_all:
        return [due]
    return [last + timedelta(days=n) for n in range(1, (due - last).days + 1)]


# --- posting ------------------------------------------------------------------------------------
def chart_for(data: DigestData) -> bytes | None:
    """The digest's chart as PNG, or None if it could not be drawn (the digest goes out without it)."""
    try:
        title = f"Daily spend by project, {CHART_DAYS} days to {format_day(data.day)}"
        return spend_chart_png(data.chart_series, title, data.currency)
    except Exception:  # a broken chart must not cost the team its digest
        log.exception("could not draw the digest chart for %s; posting without it", data.day)
        return None


def run_daily_digest(
    *,
    session_factory: Callable[[], Session],
    client: WebClient,
    channel: str,
    prices: Prices,
    budgets: dict[str, float],
    tz: str,
    now: datetime,
    replica: str,
    post_at: time | None = None,
    catch_up_all: bool = False,
    idle: IdleSource | None = None,
    sleep: Callable[[float], None] = time_module.sleep,
) -> list[date]:
    """Post every digest that is due and not yet posted (claimed first, so once per day); returns the days posted."""
    runs = DigestRuns(session_factory)
    posted = []
    for day in days_to_post(runs.last_posted_day(), due_day(now, tz, post_at), catch_up_all):
        if not runs.claim(day.isoformat(), replica, now):
            log.info("digest for %s already claimed by another replica", day)
            continue
        data = build_digest_data(session_factory, prices, budgets, tz, day, now, idle=idle)
        where = post_digest(
            client, channel, compose_digest(data, prices), chart_for(data),
            chart_name=f"spend-{day.isoformat()}.png", sleep=sleep,
        )
        runs.mark_posted(day.isoformat(), where[0], where[1], now)
        log.info("posted the digest for %s to %s", day, where[0])
        posted.append(day)
    return posted


def render_for_terminal(digest: Digest) -> str:
    """The digest as plain text for a terminal (`expbot digest --dry-run`): mentions and escapes undone."""

    def plain(text: str) -> str:
        return html.unescape(re.sub(r"<@([UW][A-Z0-9]+)>", r"@\1", text))

    sections = [plain(digest.parent_text)] + [plain(reply) for reply in digest.replies]
    return "\n\n".join([sections[0], "── thread ──", *sections[1:]]) + "\n"
