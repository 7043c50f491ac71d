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
from adapters.db.failure_queries import infra_failures_by_class, node_reports
from adapters.db.spend_days import SpendDays
from adapters.digest_chart import spend_chart_png
from adapters.slack_digest import post_digest
from core.cost import Prices
from core.node_health import AUDIT_NODE
from core.digest import (
    CHART_DAYS,
    TOP_USERS,
    Digest,
    DigestData,
    MonthToDate,
    NodeReport,
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
    kept: SpendDays | None = None,
) -> DigestData:
    """The numbers of `day`'s digest (days and months in time zone `tz`; running attempts accrue to `now`).

    With `kept`, closed days' spend is read from it (and added to it) instead of recomputed.
    """
    start, end = day_window(day, tz)
    chart_days = [day - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    month_first = day.replace(day=1)
    first = min(month_first, chart_days[0])
    # The chart's 14 days, the day before and the month so far: every day from `first` to `day`.
    days = [(d, *day_window(d, tz)) for d in (first + timedelta(days=n) for n in range((day - first).days + 1))]
    daily = kept.get(tz, first, day) if kept else {}
    missing = [entry for entry in days[:-1] if entry[0] not in daily]
    this_week, last_week = day_window(day - timedelta(days=6), tz)[0], day_window(day - timedelta(days=13), tz)[0]
    with session_factory() as session:
        costs = SqlCostQueries(session)
        projects = costs.spend_by("project", start=start, end=end, now=now)
        users = costs.spend_by("owner", start=start, end=end, now=now)[:TOP_USERS]
        if missing:  # one scan from the first missing day to the last
            span = days[days.index(missing[0]):days.index(missing[-1]) + 1]
            computed = daily_spend_by_project(session, span, now)
            daily.update({d: computed[d] for d, _, _ in missing})
        outcomes = outcome_counts(session, start, end)
        infra = infra_failures_by_class(session, start, end)
        nodes = node_reports(session, start, end, AUDIT_NODE)
        succeeded_this_week = successful_in(session, this_week, end)
        succeeded_last_week = successful_in(session, last_week, this_week)
    # The day itself comes from its breakdown, which the digest needs anyway.
    daily[day] = {p.key: p.cost for p in projects if p.cost > 0}
    if kept:
        fresh = [d for d, _, _ in missing] + [day]
        kept.put(tz, {d: daily[d] for d, _, day_end in days if d in fresh and day_end <= now}, now)
    idle_hours, idle_cost = idle(start, end) if idle else (0.0, 0.0)

    month: dict[str, float] = defaultdict(float)
    for d in (d for d, _, _ in days if d >= month_first):
        for project, cost in daily[d].items():
            month[project] += cost
    for project in budgets:
        month.setdefault(project, 0.0)  # a budgeted project that spent nothing still shows its budget
    charted = sorted({p for d in chart_days for p in daily[d]})
    return DigestData(
        day=day,
        timezone=tz,
        currency=prices.currency,
        yesterday_total=sum(p.cost for p in projects),
        day_before_total=sum(daily[day - timedelta(days=1)].values()),
        month_to_date=[
            MonthToDate(project=p, spent=s, budget=budgets.get(p))
            for p, s in sorted(month.items(), key=lambda item: (-item[1], item[0]))
        ],
        projects=[SpendLine(key=p.key, cost=p.cost, gpu_hours=p.gpu_hours) for p in projects],
        top_users=[SpendLine(key=u.key, cost=u.cost, gpu_hours=u.gpu_hours) for u in users],
        idle_gpu_hours=idle_hours,
        idle_cost=idle_cost,
        outcomes=Outcomes(**outcomes),
        infra_failures=infra,
        node_reports=[NodeReport(**{k: d[k] for k in NodeReport.model_fields if k in d}) for d in nodes],
        successful_this_week=succeeded_this_week,
        successful_last_week=succeeded_last_week,
        chart_series={p: [(d, daily[d].get(p, 0.0)) for d in chart_days] for p in charted},
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


def publish_digest(
    day: date,
    *,
    session_factory: Callable[[], Session],
    client: WebClient,
    channel: str,
    prices: Prices,
    budgets: dict[str, float],
    tz: str,
    now: datetime,
    replica: str,
    idle: IdleSource | None = None,
    kept: SpendDays | None = None,
    sleep: Callable[[float], None] = time_module.sleep,
) -> tuple[str, str] | None:
    """Claim, compose and post `day`'s digest; (channel, ts) of its parent, or None if another claimed it."""
    runs = DigestRuns(session_factory)
    if not runs.claim(day.isoformat(), replica, now):
        log.info("the digest for %s was claimed already (posted, or being posted by another replica)", day)
        return None
    data = build_digest_data(session_factory, prices, budgets, tz, day, now, idle=idle, kept=kept)
    channel_id, ts = post_digest(
        client, channel, compose_digest(data, prices), chart_for(data),
        chart_name=f"spend-{day.isoformat()}.png", sleep=sleep,
    )
    runs.mark_posted(day.isoformat(), channel_id, ts, now)
    log.info("posted the digest for %s to %s", day, channel_id)
    return channel_id, ts


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
    kept: SpendDays | None = None,
    sleep: Callable[[float], None] = time_module.sleep,
) -> list[date]:
    """Post every digest that is due and not yet posted (each claimed first: once per day); the days posted."""
    last_posted = DigestRuns(session_factory).last_posted_day()
    posted = []
    for day in days_to_post(last_posted, due_day(now, tz, post_at), catch_up_all):
        where = publish_digest(
            day, session_factory=session_factory, client=client, channel=channel, prices=prices, budgets=budgets,
            tz=tz, now=now, replica=replica, idle=idle, kept=kept, sleep=sleep,
        )
        if where is not None:
            posted.append(day)
    return posted


def render_for_terminal(digest: Digest) -> str:
    """The digest as plain text for a terminal (`expbot digest --dry-run`): mentions and escapes undone."""

    def plain(text: str) -> str:
        return html.unescape(re.sub(r"<@([UW][A-Z0-9]+)>", r"@\1", text))

    sections = [plain(digest.parent_text)] + [plain(reply) for reply in digest.replies]
    return "\n\n".join([sections[0], "── thread ──", *sections[1:]]) + "\n"
