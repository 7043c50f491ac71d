"""`expbot cost`, `budget` and `digest`: cost control from the command line (tables, or --json for scripts)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bot.cli_shared import app, current_user, open_expbot, out, print_json
from core.errors import ExpbotError

_JSON_HELP = "Machine-readable output."


@app.command()
def cost(
    days: int = typer.Option(7, min=1, max=366, help="How many days back."),
    project: Optional[str] = typer.Option(None, help="Only this project."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Spend by project and by user over the last days."""
    from rich.table import Table

    from core.reports import cost_report

    bot = open_expbot()
    with bot.uow_factory() as uow:
        report = cost_report(uow, bot.clock.now(), days, project)
    if as_json:
        rows = {title: [{title: r.key, "cost": round(r.cost, 2), "gpu_hours": round(r.gpu_hours, 2)} for r in rows]
                for title, rows in (("project", report.by_project), ("owner", report.by_owner))}
        print_json({"days": days, "start": report.start.isoformat(), "end": report.end.isoformat(),
                    "currency": bot.prices.currency, "total": round(report.total, 2),
                    "by_project": rows["project"], "by_owner": rows["owner"]})
        return
    out.print(f"Spend over the last {days} days: {bot.prices.format(report.total)}")
    for title, rows in (("PROJECT", report.by_project), ("OWNER", report.by_owner)):
        table = Table(title=None)
        for column in (title, "COST", "GPU-HOURS"):
            table.add_column(column)
        for row in rows:
            table.add_row(row.key, bot.prices.format(row.cost), f"{row.gpu_hours:,.1f}")
        out.print(table)


@app.command()
def budget(
    scope: Optional[str] = typer.Argument(None, help="To set one: project or user."),
    name: Optional[str] = typer.Argument(None, help="The project or user."),
    amount: Optional[float] = typer.Argument(None, help="Monthly limit."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Show this month's budgets, or set one: expbot budget project nlp 5000."""
    from core import commands
    from core.reports import budget_report

    bot = open_expbot()
    if scope is not None:
        if name is None or amount is None:
            raise ExpbotError("usage: expbot budget [project|user NAME AMOUNT]")
        # Like stop: whoever can run the CLI against the store is trusted as an admin.
        bot.bus.handle(commands.SetBudget(scope=scope, name=name, monthly_limit=amount, by=current_user(), as_admin=True))
    with bot.uow_factory() as uow:
        statuses = budget_report(uow, bot.budgets, bot.prices, bot.clock.now())
    if as_json:
        print_json([{"scope": s.limit.scope, "name": s.limit.name, "currency": bot.prices.currency,
                     "spent": round(s.spent, 2), "committed": round(s.committed, 2),
                     "limit": s.limit.monthly, "remaining": round(s.remaining, 2)} for s in statuses])
        return
    if not statuses:
        out.print("no budgets are configured: every launch starts without approval")
        return
    _budget_table(bot, statuses)


def _budget_table(bot, statuses) -> None:
    from rich.table import Table

    table = Table()
    for column in ("SCOPE", "NAME", "SPENT", "COMMITTED", "LIMIT", "REMAINING"):
        table.add_column(column)
    for s in statuses:
        table.add_row(s.limit.scope, s.limit.name, bot.prices.format(s.spent), bot.prices.format(s.committed),
                      bot.prices.format(s.limit.monthly), bot.prices.format(s.remaining))
    out.print(table)


@app.command()
def digest(
    date: Optional[str] = typer.Option(None, "--date", help="The day (YYYY-MM-DD); default: the one due now."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print it here instead of posting it."),
    chart: Optional[Path] = typer.Option(None, help="Also write the chart PNG to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print the digest's figures as JSON (posts nothing)."),
) -> None:
    """Build the daily cost digest: print it (--dry-run) or post it to the digest channel."""
    from bot.digest_job import digest_command  # matplotlib loads only for this command

    if as_json:
        print_json(_digest_data(open_expbot(), date).model_dump(mode="json"))
        return
    out.print(digest_command(_for_posting(dry_run), date, dry_run, chart), markup=False, highlight=False)


def _for_posting(dry_run: bool):
    """expbot wired to post the digest: to Slack, or without a Slack token to the sandbox of a running serve."""
    if dry_run:
        return open_expbot()
    from bot.bootstrap import bootstrap
    from bot.config import load_settings
    from bot.sandbox.client import posting_settings

    return bootstrap(posting_settings(load_settings()))


def _digest_data(bot, day: str | None):
    """The figures of one day's digest (the due day unless `day` names one)."""
    from datetime import date as Date

    from core.digest_service import due_day

    assert bot.digest is not None, "bootstrap builds the digest service"
    now = bot.clock.now()
    try:
        when = Date.fromisoformat(day) if day else due_day(now, bot.digest.timezone)
    except ValueError:
        raise ExpbotError(f"--date expects a day like 2026-11-21, got {day!r}") from None
    return bot.digest.build_digest_data(when, now)
