"""Cost and budget reports as text (Slack mrkdwn), and the arguments both front ends accept."""
from __future__ import annotations

from core.budget import BudgetStatus
from core.cost import Prices
from core.errors import ExpbotError
from core.reports import CostReport

COST_USAGE = "cost [--days N] [--project P]"
BUDGET_USAGE = "budget [set project|user NAME AMOUNT]"


def parse_cost_args(words: list[str]) -> tuple[int, str | None]:
    """(days, project) from `--days N --project P` (defaults: 7 days, every project)."""
    days, project = 7, None
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word not in ("--days", "--project") or not rest:
            raise ExpbotError(f"usage: {COST_USAGE}")
        value = rest.pop(0)
        if word == "--days":
            if not value.isdigit() or not 1 <= int(value) <= 366:
                raise ExpbotError(f"--days expects a number of days from 1 to 366, got {value!r}")
            days = int(value)
        else:
            project = value
    return days, project


def _who(owner: str) -> str:
    return f"<@{owner}>" if owner[:1] in ("U", "W") and owner.isalnum() and owner.isupper() else owner


def cost_text(report: CostReport, prices: Prices, days: int) -> str:
    """The report as mrkdwn lines: total, then projects and users, most expensive first."""
    lines = [f"*Spend over the last {days} day{'s' if days != 1 else ''}: {prices.format(report.total)}*"]
    if report.by_project:
        lines.append("*By project*")
        lines += [f"• {r.key}: {prices.format(r.cost)} ({r.gpu_hours:,.1f} GPU-hours)" for r in report.by_project[:20]]
    if report.by_owner:
        lines.append("*By user*")
        lines += [f"• {_who(r.key)}: {prices.format(r.cost)}" for r in report.by_owner[:20]]
    if not report.by_project:
        lines.append("Nothing was spent in that period.")
    return "\n".join(lines)


def budget_text(statuses: list[BudgetStatus], prices: Prices) -> str:
    """Each budget: spent, committed, remaining, as mrkdwn lines."""
    if not statuses:
        return "No budgets are configured: every launch starts without approval."
    lines = ["*Budgets this month*"]
    for s in statuses:
        flag = " :rotating_light:" if s.remaining < 0 else (" :warning:" if s.percent_spent >= 80 else "")
        name = _who(s.limit.name) if s.limit.scope == "user" else s.limit.name
        lines.append(
            f"• {s.limit.scope} {name}: {prices.format(s.spent)} spent + {prices.format(s.committed)} committed "
            f"of {prices.format(s.limit.monthly)} ({s.percent_spent:.0f}% spent){flag}"
        )
    return "\n".join(lines)
