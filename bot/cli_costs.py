"""`expbot cost`, `budget` and `digest`: cost control from the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from bot.cli_shared import app, current_user, open_expbot, out
from core import commands
from core.errors import ExpbotError
from core.reports import budget_report, cost_report


@app.command()
def cost(
    days: int = typer.Option(7, min=1, max=366, help="How many days back."),
    project: Optional[str] = typer.Option(None, help="Only this project."),
) -> None:
    """Spend by project and by user over the last days."""
    bot = open_expbot()
    with bot.uow_factory() as uow:
        report = cost_report(uow, bot.clock.now(), days, project)
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
) -> None:
    """Show this month's budgets, or set one: expbot budget project nlp 5000."""
    bot = open_expbot()
    if scope is not None:
        if name is None or amount is None:
            raise ExpbotError("usage: expbot budget [project|user NAME AMOUNT]")
        # Like stop: whoever can run the CLI against the store is trusted as an admin.
        bot.bus.handle(commands.SetBudget(scope=scope, name=name, monthly_limit=amount, by=current_user(), as_admin=True))
    with bot.uow_factory() as uow:
        statuses = budget_report(uow, bot.budgets, bot.prices, bot.clock.now())
    if not statuses:
        out.print("no budgets are configured: every launch starts without approval")
        return
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
) -> None:
    """Build the daily cost digest: print it (--dry-run) or post it to the digest channel."""
    from bot.digest_job import digest_command  # matplotlib loads only for this command

    out.print(digest_command(open_expbot(), date, dry_run, chart), markup=False, highlight=False)
