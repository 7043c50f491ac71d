"""The daily cost digest: the numbers it reports (gathered by adapters) and the text it posts (pure)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from core.cost import Prices
from core.durations import format_duration
from core.mrkdwn import SECTION_LIMIT, escape
from core.mrkdwn import mention as who

TOP_USERS = 5
CHART_DAYS = 14
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class SpendLine(BaseModel):
    """Spend of one project or owner on the digest's day."""

    model_config = ConfigDict(frozen=True)
    key: str
    cost: float
    gpu_hours: float = 0.0


class MonthToDate(BaseModel):
    """One project's spend from the first of the month through the digest's day, and its budget."""

    model_config = ConfigDict(frozen=True)
    project: str
    spent: float
    budget: float | None = None  # monthly limit; None when the project has none


class Outcomes(BaseModel):
    """How experiments ended on the digest's day, and how many attempts were restarts."""

    model_config = ConfigDict(frozen=True)
    succeeded: int = 0
    failed: int = 0
    stopped: int = 0
    restarts: int = 0


class NodeReport(BaseModel):
    """A node reported sick on the digest's day (core.node_health's audit entry)."""

    model_config = ConfigDict(frozen=True)
    node: str
    experiments: int
    faults: int
    window_hours: int = 24
    last_reason: str = ""


class DigestData(BaseModel):
    """Everything one day's digest reports; amounts in `currency`, days in the configured time zone."""

    model_config = ConfigDict(frozen=True)
    day: date
    timezone: str = "UTC"
    currency: str = "USD"
    yesterday_total: float  # spend on `day` (the digest is posted the day after)
    day_before_total: float
    month_to_date: list[MonthToDate] = Field(default_factory=list)  # most spent first
    projects: list[SpendLine] = Field(default_factory=list)  # on `day`, most expensive first
    top_users: list[SpendLine] = Field(default_factory=list)  # on `day`, at most TOP_USERS
    idle_gpu_hours: float = 0.0
    idle_cost: float = 0.0
    outcomes: Outcomes = Field(default_factory=Outcomes)
    infra_failures: dict[str, int] = Field(default_factory=dict)  # failure class -> attempts that day
    node_reports: list[NodeReport] = Field(default_factory=list)
    successful_this_week: int = 0  # the 7 days ending with `day`
    successful_last_week: int = 0  # the 7 days before those
    chart_series: dict[str, list[tuple[date, float]]] = Field(default_factory=dict)  # project -> daily cost


class Digest(BaseModel):
    """What gets posted: a parent message and its thread replies (Slack mrkdwn, each < 3,000 chars)."""

    model_config = ConfigDict(frozen=True)
    parent_text: str
    replies: list[str]


# --- days in the configured time zone -----------------------------------------------------------
def day_window(day: date, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day as UTC instants (23 or 25 hours long on DST days)."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def format_day(day: date) -> str:
    """A day as people read it, independent of the process locale: 'Sat 21 Nov 2026'."""
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


# --- mrkdwn -------------------------------------------------------------------------------------
def _fit(header: str, lines: list[str], limit: int = SECTION_LIMIT) -> str:
    """Header plus as many lines as fit under `limit`, then how many were left out."""
    text = header
    for n, line in enumerate(lines):
        rest = len(lines) - n
        tail = f"\n…and {rest - 1} more" if rest > 1 else ""
        if len(text) + 1 + len(line) + len(tail) >= limit:
            return text + f"\n…and {rest} more"
        text += "\n" + line
    return text


# --- composition --------------------------------------------------------------------------------
def change_vs(today: float, before: float, what: str = "the day before") -> str:
    """'▲ 12% vs the day before', '▼ 3% ...', or a phrase for no change / nothing to compare with."""
    if before <= 0:
        return f"nothing {what}" if today > 0 else f"none {what} either"
    percent = (today - before) / before * 100.0
    if round(percent) == 0:
        return f"about the same as {what}"
    return f"{'▲' if percent > 0 else '▼'} {abs(percent):.0f}% vs {what}"


def compose_digest(data: DigestData, prices: Prices) -> Digest:
    """The parent message (totals and change) and one thread reply per section."""
    money = prices.format
    day = format_day(data.day)
    month_total = sum(m.spent for m in data.month_to_date)
    parent = (
        f"*GPU spend digest for {day}*\n"
        f"Spend: *{money(data.yesterday_total)}* ({change_vs(data.yesterday_total, data.day_before_total)})"
        f" · Month to date: *{money(month_total)}*"
    )
    replies = [
        _projects_reply(data, prices, day),
        _users_reply(data, prices, day),
        _idle_reply(data, prices, day),
        _outcomes_reply(data, day),
        _weekly_reply(data, day),
    ]
    if data.node_reports:
        replies.append(_nodes_reply(data, day))
    return Digest(parent_text=parent[:SECTION_LIMIT - 1], replies=replies)


def _budget_note(month: MonthToDate | None, money: Callable[[float], str]) -> str:
    if month is None:
        return ""
    note = f" · month to date {money(month.spent)}"
    if month.budget is None or month.budget <= 0:
        return note
    percent = 100.0 * month.spent / month.budget
    flag = " :rotating_light: over budget" if percent >= 100 else " :warning:" if percent >= 80 else ""
    return note + f" of {money(month.budget)} ({percent:.0f}%){flag}"


def _projects_reply(data: DigestData, prices: Prices, day: str) -> str:
    months = {m.project: m for m in data.month_to_date}
    lines = [
        f"• *{escape(p.key)}*: {prices.format(p.cost)} · {p.gpu_hours:,.1f} GPU-h"
        + _budget_note(months.get(p.key), prices.format)
        for p in data.projects
    ]
    # Projects that spent nothing that day still show where their month stands.
    seen = {p.key for p in data.projects}
    lines += [
        f"• *{escape(m.project)}*: {prices.format(0)}" + _budget_note(m, prices.format)
        for m in data.month_to_date
        if m.project not in seen
    ]
    if not lines:
        return f"*Per project*: no spend on {day}."
    return _fit(f"*Per project* on {day}", lines)


def _users_reply(data: DigestData, prices: Prices, day: str) -> str:
    if not data.top_users:
        return f"*Top spenders*: nobody spent anything on {day}."
    lines = [
        f"{n}. {who(u.key)}: {prices.format(u.cost)} · {u.gpu_hours:,.1f} GPU-h"
        for n, u in enumerate(data.top_users[:TOP_USERS], start=1)
    ]
    return _fit(f"*Top spenders* on {day}", lines)


def _idle_reply(data: DigestData, prices: Prices, day: str) -> str:
    if data.idle_gpu_hours <= 0:
        return f"*Idle GPUs*: no idle GPU time recorded on {day}."
    return (
        f"*Idle GPUs*: {data.idle_gpu_hours:,.1f} GPU-hours sat idle on {day}, "
        f"about {prices.format(data.idle_cost)} wasted."
    )


def _outcomes_reply(data: DigestData, day: str) -> str:
    o = data.outcomes
    restarts = "1 restart" if o.restarts == 1 else f"{o.restarts} restarts"
    return (
        f"*Experiments* on {day}: {o.succeeded} succeeded · {o.failed} failed · {o.stopped} stopped"
        f" · {restarts}" + _infra_line(data)
    )


_INFRA_WORDS = (("hardware", "hardware"), ("network", "network"), ("infra", "preempted or lost"), ("stall", "stuck"))


def _infra_line(data: DigestData) -> str:
    parts = [f"{data.infra_failures[kind]} {words}" for kind, words in _INFRA_WORDS if data.infra_failures.get(kind)]
    return f"\nInfrastructure failures: {' · '.join(parts)}" if parts else ""


def _nodes_reply(data: DigestData, day: str) -> str:
    lines = [
        f"• node `{escape(r.node)}`: {r.faults} hardware or network failures of {r.experiments} experiments "
        f"in {format_duration(r.window_hours * 3600)}, last: {escape(r.last_reason)}"
        for r in data.node_reports
    ]
    return _fit(f"*Node health* on {day}", lines)


def _weekly_reply(data: DigestData, day: str) -> str:
    this, last = data.successful_this_week, data.successful_last_week
    return (
        f"*Successful experiments* this week (7 days to {day}): {this} · last week: {last}"
        f" ({change_vs(this, last, 'last week')})"
    )
