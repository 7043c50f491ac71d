"""The daily digest service: gather one day's numbers through the digest ports, compose, chart, post once."""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.cost import Prices
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
from core.digest_ports import DayWindow, DigestClaims, DigestPublisher, DigestQueries, OpenDigestQueries, SpendHistory
from core.errors import ExpbotError
from core.ports import SpendRow

log = logging.getLogger("expbot.digest")

# Draws the chart: (series per project, title, currency) -> PNG.
ChartDrawer = Callable[[dict[str, list[tuple[date, float]]], str, str], bytes]


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


@dataclass
class _Reads:
    """What one digest reads from the store in one view, besides the daily spend."""

    projects: list[SpendRow]
    users: list[SpendRow]
    outcomes: dict[str, int]
    infra: dict[str, int]
    nodes: list[dict]
    this_week: int
    last_week: int
    daily: dict[date, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class DigestService:
    """Everything a digest needs, built once by bootstrap: the scheduled job and `expbot digest` use it."""

    open_queries: OpenDigestQueries
    prices: Prices
    timezone: str
    budgets: Callable[[], dict[str, float]] = dict  # project budgets in force (admins change them at runtime)
    history: SpendHistory | None = None  # closed days' spend, read instead of recomputed
    idle_gpu_hours: Callable[[datetime], float] | None = None  # idle GPU-hours since a time
    claims: DigestClaims | None = None
    publisher: DigestPublisher | None = None  # None: nowhere to post (no Slack or no digest channel)
    draw_chart: ChartDrawer | None = None
    replica: str = "expbot"
    post_at: time | None = None
    catch_up_all: bool = False  # after downtime: every missed day, or only the latest
    began: Callable[[], datetime | None] | None = None  # when the first experiment was launched (None: none yet)

    @property
    def can_post(self) -> bool:
        """Whether digests can be posted (somewhere to post, and claims that make them once per day)."""
        return self.publisher is not None and self.claims is not None

    def build_digest_data(self, day: date, now: datetime) -> DigestData:
        """The numbers of `day`'s digest (days and months in the time zone; running attempts accrue to `now`).

        With a spend history, closed days' spend is read from it (and added to it) instead of recomputed.
        """
        tz = self.timezone
        # The chart's 14 days, the day before and the month so far: every day from `first` to `day`.
        first = min(day.replace(day=1), day - timedelta(days=CHART_DAYS - 1))
        days = [(d, *day_window(d, tz)) for d in (first + timedelta(days=n) for n in range((day - first).days + 1))]
        daily = self.history.get(tz, first, day) if self.history else {}
        missing = [entry for entry in days[:-1] if entry[0] not in daily]
        with self.open_queries() as queries:
            reads = _read(queries, day, days, missing, tz, now)
        daily.update(reads.daily)
        # The day itself comes from its breakdown, which the digest needs anyway.
        daily[day] = {p.key: p.cost for p in reads.projects if p.cost > 0}
        if self.history:
            fresh = {d for d, _, _ in missing} | {day}
            self.history.put(tz, {d: daily[d] for d, _, end in days if d in fresh and end <= now}, now)
        return self._assemble(day, reads, daily)

    def _idle(self, day: date, projects: list[SpendRow]) -> tuple[float, float]:
        """Idle GPU-hours of the day, costed at the day's average price per GPU-hour (its project spend).

        Approximate: the idle table keeps one running total per experiment, so an experiment that was
        idle before the day and is still active counts whole.
        """
        if self.idle_gpu_hours is None:
            return 0.0, 0.0
        hours = self.idle_gpu_hours(day_window(day, self.timezone)[0])
        gpu_hours = sum(r.gpu_hours for r in projects)
        per_gpu_hour = sum(r.cost for r in projects) / gpu_hours if gpu_hours else 0.0
        return hours, hours * per_gpu_hour

    def _assemble(self, day: date, reads: _Reads, daily: dict[date, dict[str, float]]) -> DigestData:
        budgets = self.budgets()
        month_first = day.replace(day=1)
        month: dict[str, float] = defaultdict(float)
        for d in (d for d in daily if month_first <= d <= day):
            for project, cost in daily[d].items():
                month[project] += cost
        for project in budgets:
            month.setdefault(project, 0.0)  # a budgeted project that spent nothing still shows its budget
        chart_days = [day - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
        charted = sorted({p for d in chart_days for p in daily[d]})
        idle_hours, idle_cost = self._idle(day, reads.projects)
        return DigestData(
            day=day, timezone=self.timezone, currency=self.prices.currency,
            yesterday_total=sum(p.cost for p in reads.projects),
            day_before_total=sum(daily[day - timedelta(days=1)].values()),
            month_to_date=[MonthToDate(project=p, spent=s, budget=budgets.get(p))
                           for p, s in sorted(month.items(), key=lambda item: (-item[1], item[0]))],
            projects=[SpendLine(key=p.key, cost=p.cost, gpu_hours=p.gpu_hours) for p in reads.projects],
            top_users=[SpendLine(key=u.key, cost=u.cost, gpu_hours=u.gpu_hours) for u in reads.users],
            idle_gpu_hours=idle_hours, idle_cost=idle_cost, outcomes=Outcomes(**reads.outcomes),
            infra_failures=reads.infra,
            node_reports=[NodeReport(**{k: d[k] for k in NodeReport.model_fields if k in d}) for d in reads.nodes],
            successful_this_week=reads.this_week, successful_last_week=reads.last_week,
            chart_series={p: [(d, daily[d].get(p, 0.0)) for d in chart_days] for p in charted},
        )

    def compose(self, data: DigestData) -> Digest:
        """The digest's text: the parent message and its thread replies."""
        return compose_digest(data, self.prices)

    def chart(self, data: DigestData) -> bytes | None:
        """The digest's chart as PNG, or None if it could not be drawn (the digest goes out without it)."""
        if self.draw_chart is None:
            return None
        if not any(cost for series in data.chart_series.values() for _, cost in series):
            return None  # nothing was spent in the chart's days: no empty chart
        try:
            title = f"Daily spend by project, {CHART_DAYS} days to {format_day(data.day)}"
            return self.draw_chart(data.chart_series, title, data.currency)
        except Exception:  # a broken chart must not cost the team its digest
            log.exception("could not draw the digest chart for %s; posting without it", data.day)
            return None

    def publish(self, day: date, now: datetime) -> tuple[str, str] | None:
        """Claim, compose and post `day`'s digest; (channel, ts) of its parent, or None if another claimed it."""
        if self.claims is None or self.publisher is None:
            raise ExpbotError("the digest has nowhere to go: Slack or the digest channel is not configured")
        if not self.claims.claim(day.isoformat(), self.replica, now):
            log.info("the digest for %s was claimed already (posted, or being posted by another replica)", day)
            return None
        data = self.build_digest_data(day, now)
        channel_id, ts = self.publisher(self.compose(data), self.chart(data), chart_name=f"spend-{day.isoformat()}.png")
        self.claims.mark_posted(day.isoformat(), channel_id, ts, now)
        log.info("posted the digest for %s to %s", day, channel_id)
        return channel_id, ts

    def post_due(self, now: datetime, missed_only: bool = False) -> list[date]:
        """Post every digest that is due and not yet posted (each claimed first: once per day); the days posted.

        `missed_only`: only catch up after a digest was posted before. Before the first digest, no
        day that ended before expbot's first launch is posted: a fresh install says nothing of them.
        """
        if self.claims is None or self.publisher is None:
            return []
        last = self.claims.last_posted_day()
        if last is None and missed_only:
            return []
        days = days_to_post(last, due_day(now, self.timezone, self.post_at), self.catch_up_all)
        if last is None and self.began is not None:
            began = self.began()
            days = [d for d in days if began is not None and day_window(d, self.timezone)[1] > began]
        return [day for day in days if self.publish(day, now) is not None]


def _read(
    queries: DigestQueries, day: date, days: list[DayWindow], missing: list[DayWindow], tz: str, now: datetime
) -> _Reads:
    """Every read of one digest, in one view of the store; the missing days' spend in one scan."""
    start, end = day_window(day, tz)
    this_week, last_week = day_window(day - timedelta(days=6), tz)[0], day_window(day - timedelta(days=13), tz)[0]
    reads = _Reads(
        projects=queries.spend_by("project", start=start, end=end, now=now),
        users=queries.spend_by("owner", start=start, end=end, now=now)[:TOP_USERS],
        outcomes=queries.outcome_counts(start, end),
        infra=queries.infra_failures_by_class(start, end),
        nodes=queries.node_reports(start, end),
        this_week=queries.successful_in(this_week, end),
        last_week=queries.successful_in(last_week, this_week),
    )
    if missing:  # one scan from the first missing day to the last
        span = days[days.index(missing[0]):days.index(missing[-1]) + 1]
        computed = queries.daily_spend_by_project(span, now)
        reads.daily = {d: computed[d] for d, _, _ in missing}
    return reads
