"""The `expbot` command line: the same commands Slack sends, on the same store."""
from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from bot.cli_shared import app, current_user, db_app, err, find, open_expbot, out, print_json
from core.errors import ExpbotError

if TYPE_CHECKING:
    from bot.bootstrap import Expbot

# Everything else is imported by the commands that use it: `expbot --help` or `ls` must not pay
# for Alembic, the supervisor and the schedulers (about a second on a small machine).


# No help option: `-- python train.py --help` belongs to the training command, not to expbot.
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def launch(ctx: typer.Context) -> None:
    """Launch an experiment: NAME [options] -- COMMAND ARGS... (`expbot launch --help` lists the options)."""
    import shlex

    from core import commands

    words = _launch_words(ctx.args)
    if not words or words[0] in ("-h", "--help"):
        out.print(_launch_help(), markup=False, highlight=False)
        return
    bot = open_expbot()  # a write: it may create or upgrade the schema, as it always did
    key = os.environ.get("EXPBOT_IDEMPOTENCY_KEY") or uuid.uuid4().hex
    result = bot.bus.handle(commands.LaunchExperiment(text=shlex.join(words), owner=current_user(), idempotency_key=key))
    from bot.cli_groups import print_launched

    print_launched(bot, result)  # a sweep's members with their values; what it waits for


def _launch_help() -> str:
    """The launch options with this installation's defaults (built-in ones if its settings are wrong)."""
    from bot.cli_usage import launch_help
    from bot.config import load_settings
    from core.grammar import USAGE
    from core.spec import LaunchConfig

    try:
        return launch_help(USAGE, load_settings().launch_config())
    except ExpbotError as e:
        return launch_help(USAGE, LaunchConfig(), note=f"(built-in defaults: the configuration is wrong: {e})")


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
    group: Optional[str] = typer.Option(None, "--group", "-g", help="Only this sweep's members."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List experiments (active ones unless --all)."""
    from bot.cli_lean import lean_ls

    if lean_ls(all_, owner, project, group, limit, as_json):
        return  # the embedded store, read without SQLAlchemy or pydantic (bot/cli_lean_store.py)
    from bot import render
    from bot.cli_store import open_reader
    from core.model import ACTIVE

    reader = open_reader()
    states = None if all_ else ACTIVE
    with reader.reading() as views:
        exps = views.experiments.list(states=states, owner=owner, project=project, group=group, limit=limit)
    if group is not None:
        from bot.cli_groups import in_launch_order

        exps = in_launch_order(exps)  # G-1, G-2, ... G-10, not the order of their ids
    now = reader.now()
    if as_json:
        print_json([render.experiment_dict(e, now) for e in exps])
    elif not exps:
        out.print(render.empty_listing(all_, owner, project, group))
    else:
        out.print(render.experiments_table(exps, now))


@app.command()
def status(name: str, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show one experiment (state, attempts, timeline), or a sweep: its members' states, values and cost."""
    from bot.cli_lean import lean_status

    if lean_status(name, as_json):
        return  # one experiment in the embedded store, read without SQLAlchemy or pydantic
    from bot import render
    from bot.cli_groups import show_group
    from bot.cli_store import open_reader
    from bot.cli_waiting import waiting_notes
    from core.errors import NotFound

    reader = open_reader()
    try:
        exp, timeline = find(reader, name)
    except NotFound:  # asked only now: an experiment's status reads the store once, as before sweeps
        if show_group(reader, name, as_json):
            return
        raise
    now = reader.now()
    process = _process(reader, exp)
    if as_json:
        print_json(render.experiment_dict(exp, now, timeline, process) | waiting_notes(reader, exp, as_json=True))
        return
    for table in render.status_tables(exp, timeline, now, process):
        out.print(table)
    for line in waiting_notes(reader, exp):  # an approval's numbers and approvers; no serve to start it
        out.print(line)


def _process(reader, exp) -> dict | None:
    """The live local attempt's pid and process group (what to kill to watch a restart), else None."""
    attempt = exp.current_attempt
    if attempt is None or attempt.state == "ENDED":
        return None  # asked first: the backend is built only for a live attempt
    process_info = getattr(reader.backend, "process_info", None)  # the local runner's own
    if process_info is None:
        return None
    return process_info(exp.id, attempt.number)


@app.command()
def stop(
    name: str = typer.Argument(..., help="The experiment's name, id or id prefix, or a sweep's name."),
    reason: str = typer.Option("", help="Why, for the record."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it has stopped (default) or return at once."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Stop every member of a sweep without asking."),
) -> None:
    """Stop an experiment or a whole sweep: `expbot serve` sends SIGTERM, then SIGKILL after the grace."""
    from bot.cli_groups import stop_group
    from core import commands
    from core.model import State

    bot = open_expbot()
    if stop_group(bot, name, reason=reason, by=current_user(), yes=yes, wait=wait):
        return
    # The CLI talks to the store directly, so whoever can run it is already trusted as an admin.
    exp = bot.bus.handle(commands.StopExperiment(name=name, by=current_user(), as_admin=True, reason=reason))
    if exp.state != State.STOPPING:
        out.print(f"{exp.name}: {exp.state} ({exp.state_reason})")
        return
    grace = bot.settings.stop_grace_seconds
    out.print(f"{exp.name}: STOPPING - expbot serve sends SIGTERM, then SIGKILL after {grace:g}s")
    if wait:
        _wait_stopped(bot, exp.id, exp.name, deadline=time.monotonic() + grace + _STOP_SLACK_SECONDS)


_STOP_SLACK_SECONDS = 15.0  # beyond the grace: serve's next pass, and the kill itself


def _wait_stopped(bot: "Expbot", experiment_id: str, name: str, deadline: float) -> None:
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
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="Keep printing, through restarts, until the experiment has ended."),
) -> None:
    """Print an attempt's output (with --follow: every later attempt's too, until the experiment ends)."""
    from bot.cli_logs import follow_experiment
    from bot.cli_store import open_reader

    reader = open_reader()
    exp, _ = find(reader, name)
    if not exp.attempts and not follow:
        raise ExpbotError(f"{name} has no attempts yet ({exp.state}: {exp.state_reason})")
    number = attempt or (exp.attempts[-1].number if exp.attempts else 1)
    if exp.attempts and not 1 <= number <= len(exp.attempts):
        raise ExpbotError(f"{name} has attempts 1..{len(exp.attempts)}; there is no attempt {number}")
    if not follow:
        sys.stdout.write(reader.backend.logs(exp.id, number, tail))
        return
    follow_experiment(reader, exp.id, number, tail)


# Registered here so `expbot --help` lists them after the experiment commands, as before.
from bot import cli_costs  # noqa: E402,F401  (cost, budget, digest)
from bot import cli_approvals  # noqa: E402,F401  (approve, deny)


@app.command()
def serve(
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Upgrade the database schema on start."),
) -> None:
    """Run expbot: the supervisor and the schedulers (and Slack, when configured)."""
    from bot.bootstrap import bootstrap
    from bot.config import load_settings
    from bot.logs import configure_logging
    from bot.serve import run_forever  # keeps plain CLI commands from importing APScheduler

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    from bot.sandbox.wiring import open_sandbox

    sandbox = open_sandbox(settings)  # a local Slack stand-in at /sandbox when no Slack token is configured
    bot = bootstrap(sandbox.settings if sandbox else settings, migrate=migrate)
    run_forever(sandbox.attach(bot) if sandbox else bot, mount=sandbox.mount if sandbox else None)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Upgrade the database schema (Alembic) to the given revision."""
    from adapters.db.migrate import current_revision, upgrade
    from bot.bootstrap import database_errors
    from bot.config import load_settings

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    with database_errors(url):
        upgrade(url, revision)
        current = current_revision(url)
    out.print(f"database at revision {current}")


def main() -> None:
    """Console-script entry point: known errors become one clear line, never a traceback."""
    from bot.cli_usage import USAGE_ERRORS, cut_long_words, name_arguments, report_usage_error

    try:
        # Outside standalone mode typer hands Ctrl-C (as 130) and typer.Exit back as a return value.
        code = name_arguments(typer.main.get_command(app))(standalone_mode=False)
    except ExpbotError as e:
        err.print(f"error: {cut_long_words(str(e))}", markup=False, highlight=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except USAGE_ERRORS as e:  # an unknown command or option, a bad option value, a missing argument
        sys.exit(report_usage_error(e))
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        where = _record_internal_error(error_id)
        err.print(f"error: internal error (id {error_id}); details are in {where}", markup=False)
        sys.exit(1)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)  # else an interrupted `stop` exited 0, as if it had succeeded


def _record_internal_error(error_id: str) -> str:
    """Append the traceback to the data directory's error log (never shown to the user)."""
    import traceback

    from bot.config import Settings

    try:
        # Not Settings(): the error being recorded may be a bad setting; the default dir still works.
        path = Path(os.environ.get("EXPBOT_DATA_DIR") or Settings.model_fields["data_dir"].default) / "errors.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} error {error_id}\n{traceback.format_exc()}\n")
        return str(path)
    except Exception:
        return "the log (it could not be written)"
