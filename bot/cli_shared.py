"""What every `expbot` command shares: the Typer app, the consoles, who the user is, the store."""
from __future__ import annotations

import getpass
import os
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

import bot.cli_params  # noqa: F401  (plain values without pydantic: read commands stay fast)

if TYPE_CHECKING:  # the wiring is imported by the commands that use it, never by `--help`
    from bot.bootstrap import Expbot

# Plain help, not rich's: rich markup ate "[options]" from the command list, and its panels gave every
# flag a "<bool>" placeholder. Completion options are left out: they only clutter a newcomer's help.
app = typer.Typer(help="expbot: run, supervise and checkpoint-restart ML experiments.", no_args_is_help=True,
                  rich_markup_mode=None, add_completion=False)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        print(f"expbot {version('expbot')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print expbot's version and exit."),
) -> None:
    """expbot: run, supervise and checkpoint-restart ML experiments."""
# Piped into a script, a table must not wrap words (`SUCCEED`/`ED`): lines are as long as they need.
_PIPE_WIDTH = None if sys.stdout.isatty() else 100_000
# No markup: names, commands and reasons are user text, and "[/mnt/a]" or "[/]" in them is not
# rich markup (it printed wrongly, or failed on every later `status` and `ls`).
out = Console(markup=False, width=_PIPE_WIDTH)
err = Console(stderr=True, markup=False, soft_wrap=True)  # one line per error: paths stay whole


def current_user() -> str:
    """Who runs the command: EXPBOT_USER, else the login name."""
    return os.environ.get("EXPBOT_USER") or getpass.getuser()


def open_expbot(migrate: bool = True) -> "Expbot":
    """expbot wired from the environment, for one command (write commands; reads use open_reader)."""
    from bot.bootstrap import bootstrap
    from bot.config import load_settings

    return bootstrap(load_settings(), migrate=migrate)


def find(reader: Any, ref: str):
    """The experiment named (or whose id starts with) `ref`, and its timeline (reader: a cli_store.Reader)."""
    from core.lookup import find_experiment

    with reader.reading() as views:
        exp = find_experiment(views.experiments, ref, " (see `expbot ls --all`)")
        return exp, views.outbox.for_experiment(exp.id)


def print_json(data: Any) -> None:
    """Machine-readable output for scripts: indented JSON on stdout."""
    import json

    print(json.dumps(data, indent=2, default=str))
