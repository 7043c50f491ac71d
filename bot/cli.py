"""The `expbot` command line: the same commands Slack sends, on the same store."""
from __future__ import annotations

import getpass
import json
import logging
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from bot import render
from bot.bootstrap import Expbot, bootstrap
from bot.config import Settings, load_settings
from core import commands
from core.errors import ExpbotError
from core.grammar import USAGE
from core.lookup import find_experiment
from core.model import ACTIVE, State
from core.ports import AttemptPhase
from core.reports import budget_report, cost_report

app = typer.Typer(help="expbot: run, supervise and checkpoint-restart ML experiments.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
# No markup: names, commands and reasons are user text, and "[/mnt/a]" or "[/]" in them is not
# rich markup (it printed wrongly, or failed on every later `status` and `ls`).
out = Console(markup=False)
err = Console(stderr=True, markup=False, soft_wrap=True)  # one line per error: paths stay whole
log = logging.getLogger("expbot")


def _user() -> str:
    return os.environ.get("EXPBOT_USER") or getpass.getuser()


def _expbot(migrate: bool = True) -> Expbot:
    return bootstrap(load_settings(), migrate=migrate)


def _find(bot: Expbot, ref: str):
    with bot.uow_factory() as uow:
        exp = find_experiment(uow.experiments, ref, " (see `expbot ls --all`)")
        return exp, uow.outbox.for_experiment(exp.id)


# No help option: `-- python train.py --help` belongs to the training command, not to expbot.
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def launch(ctx: typer.Context) -> None:
    """Launch an experiment: NAME [options] -- COMMAND ARGS... (`expbot launch --help` lists the options)."""
    words = _launch_words(ctx.args)
    if not words or words[0] in ("-h", "--help"):
        out.print("expbot " + USAGE, markup=False, highlight=False)
        return
    bot = _expbot()
    key = os.environ.get("EXPBOT_IDEMPOTENCY_KEY") or uuid.uuid4().hex
    result = bot.bus.handle(commands.LaunchExperiment(text=shlex.join(words), owner=_user(), idempotency_key=key))
    for exp in result.experiments:
        note = " (already launched)" if result.duplicate else ""
        out.print(f"{exp.name}: {exp.state}{note} - `expbot status {exp.name}` to follow it")


def _launch_words(click_args: list[str]) -> list[str]:
    """The words after `launch`, with the `--` that click swallows put back."""
    argv = sys.argv[1:]
    if "launch" in argv:
        return argv[argv.index("launch") + 1 :]
    return click_args  # invoked programmatically: click_args is all there is


@app.command("ls")
def list_experiments(
    all_: bool = typer.Option(False, "--all", "-a", help="Include finished experiments."),
    owner: Optional[str] = typer.Option(None, help="Only this owner's."),
    project: Optional[str] = typer.Option(None, help="Only this project's."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List experiments (active ones unless --all)."""
    bot = _expbot()
    states = None if all_ else ACTIVE
    with bot.uow_factory() as uow:
        exps = uow.experiments.list(states=states, owner=owner, project=project, limit=limit)
    now = bot.clock.now()
    if as_json:
        print(json.dumps([render.experiment_dict(e, now) for e in exps], indent=2))
    elif not exps:
        out.print("no experiments" + ("" if all_ else " running (try --all)"))
    else:
        out.print(render.experiments_table(exps, now))


@app.command()
def status(name: str, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show one experiment: state, attempts, and its timeline."""
    bot = _expbot()
    exp, timeline = _find(bot, name)
    now = bot.clock.now()
    if as_json:
        print(json.dumps(render.experiment_dict(exp, now, timeline), indent=2))
        return
    for table in render.status_tables(exp, timeline, now):
        out.print(table)


@app.command()
def stop(
    name: str = typer.Argument(..., help="The experiment's name, id or id prefix."),
    reason: str = typer.Option("", help="Why, for the record."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it has stopped (default) or return at once."),
) -> None:
    """Stop an experiment: `expbot serve` sends SIGTERM, then SIGKILL after the grace; it is not restarted."""
    bot = _expbot()
    # The CLI talks to the store directly, so whoever can run it is already trusted as an admin.
    exp = bot.bus.handle(commands.StopExperiment(name=name, by=_user(), as_admin=True, reason=reason))
    if exp.state != State.STOPPING:
        out.print(f"{exp.name}: {exp.state} ({exp.state_reason})")
        return
    grace = bot.settings.stop_grace_seconds
    out.print(f"{exp.name}: STOPPING - expbot serve sends SIGTERM, then SIGKILL after {grace:g}s")
    if wait:
        _wait_stopped(bot, exp.id, exp.name, deadline=time.monotonic() + grace + _STOP_SLACK_SECONDS)


_STOP_SLACK_SECONDS = 15.0  # beyond the grace: serve's next pass, and the kill itself


def _wait_stopped(bot: Expbot, experiment_id: str, name: str, deadline: float) -> None:
    """Poll until the supervisor has recorded the stop; Ctrl-C leaves the stop to serve."""
    try:
        while time.monotonic() < deadline:
            with bot.uow_factory() as uow:
                exp = uow.experiments.get(experiment_id)
            if exp is None or exp.is_terminal:
                out.print(f"{name}: {exp.state if exp else 'gone'}" + (f" ({exp.state_reason})" if exp else ""))
                return
            time.sleep(0.2)
    except KeyboardInterrupt:
        err.print(f"{name} is still STOPPING; expbot serve finishes the stop (`expbot status {name}` to follow)")
        raise
    raise ExpbotError(f"{name} is still STOPPING: no `expbot serve` has carried out the stop yet; "
                      "it will be when one runs (`expbot status " + name + "` to follow)")
@app.command()
def logs(
    name: str,
    attempt: Optional[int] = typer.Option(None, min=1, help="Attempt number (default: the latest)."),
    tail: Optional[int] = typer.Option(None, min=1, help="Only the last N lines."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the attempt ends."),
) -> None:
    """Print an attempt's output."""
    bot = _expbot()
    exp, _ = _find(bot, name)
    if not exp.attempts:
        raise ExpbotError(f"{name} has no attempts yet ({exp.state}: {exp.state_reason})")
    number = attempt or exp.attempts[-1].number
    if not 1 <= number <= len(exp.attempts):
        raise ExpbotError(f"{name} has attempts 1..{len(exp.attempts)}; there is no attempt {number}")
    text = bot.backend.logs(exp.id, number, tail)
    sys.stdout.write(text)
    if not follow:
        return
    shown = len(bot.backend.logs(exp.id, number)) if tail else len(text)
    while True:
        status_now = bot.backend.status(exp.id, number)
        text = bot.backend.logs(exp.id, number)
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        if status_now is None or status_now.phase in (AttemptPhase.EXITED, AttemptPhase.LOST):
            return
        time.sleep(0.5)


@app.command()
def cost(
    days: int = typer.Option(7, min=1, max=366, help="How many days back."),
    project: Optional[str] = typer.Option(None, help="Only this project."),
) -> None:
    """Spend by project and by user over the last days."""
    bot = _expbot()
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
    bot = _expbot()
    if scope is not None:
        if name is None or amount is None:
            raise ExpbotError("usage: expbot budget [project|user NAME AMOUNT]")
        # Like stop: whoever can run the CLI against the store is trusted as an admin.
        bot.bus.handle(commands.SetBudget(scope=scope, name=name, monthly_limit=amount, by=_user(), as_admin=True))
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

    out.print(digest_command(_expbot(), date, dry_run, chart), markup=False, highlight=False)


@app.command()
def serve(
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Upgrade the database schema on start."),
) -> None:
    """Run expbot: the supervisor and the schedulers (and Slack, when configured)."""
    from bot.serve import run_forever  # keeps plain CLI commands from importing APScheduler

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_forever(bootstrap(settings, migrate=migrate))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Upgrade the database schema (Alembic) to the given revision."""
    from adapters.db.migrate import current_revision, upgrade
    from bot.bootstrap import database_errors

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    with database_errors(url):
        upgrade(url, revision)
        current = current_revision(url)
    out.print(f"database at revision {current}")


# click's usage-error base, wherever this typer takes click from: newer typers vendor their own
# copy (typer._click), whose errors are not the `click` package's.
_USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Console-script entry point: known errors become one clear line, never a traceback."""
    try:
        app(standalone_mode=False)
    except ExpbotError as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except _USAGE_ERRORS as e:  # an unknown command or option, a bad option value
        e.show()
        sys.exit(e.exit_code)
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        where = _record_internal_error(error_id)
        err.print(f"error: internal error (id {error_id}); details are in {where}", markup=False)
        sys.exit(1)


def _record_internal_error(error_id: str) -> str:
    """Append the traceback to the data directory's error log (never shown to the user)."""
    import traceback

    try:
        # Not Settings(): the error being recorded may be a bad setting; the default dir still works.
        path = Path(os.environ.get("EXPBOT_DATA_DIR") or Settings.model_fields["data_dir"].default) / "errors.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} error {error_id}\n{traceback.format_exc()}\n")
        return str(path)
    except Exception:
        return "the log (it could not be written)"
