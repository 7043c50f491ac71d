"""What every `expbot` command shares: the Typer app, the consoles, who the user is, the store."""
from __future__ import annotations

import getpass
import os

import typer
from rich.console import Console

from bot.bootstrap import Expbot, bootstrap
from bot.config import load_settings
from core.lookup import find_experiment

app = typer.Typer(help="expbot: run, supervise and checkpoint-restart ML experiments.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
# No markup: names, commands and reasons are user text, and "[/mnt/a]" or "[/]" in them is not
# rich markup (it printed wrongly, or failed on every later `status` and `ls`).
out = Console(markup=False)
err = Console(stderr=True, markup=False, soft_wrap=True)  # one line per error: paths stay whole


def current_user() -> str:
    """Who runs the command: EXPBOT_USER, else the login name."""
    return os.environ.get("EXPBOT_USER") or getpass.getuser()


def open_expbot(migrate: bool = True) -> Expbot:
    """expbot wired from the environment, for one command."""
    return bootstrap(load_settings(), migrate=migrate)


def find(bot: Expbot, ref: str):
    """The experiment named (or whose id starts with) `ref`, and its timeline."""
    with bot.uow_factory() as uow:
        exp = find_experiment(uow.experiments, ref, " (see `expbot ls --all`)")
        return exp, uow.outbox.for_experiment(exp.id)
