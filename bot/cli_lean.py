"""`expbot ls` and `expbot status NAME` on the embedded default, without SQLAlchemy or pydantic.

Each answers only when it can answer exactly as the full path would (the same render functions
draw light views of the same rows); otherwise it returns False before printing anything and the
command goes on as before (bot/cli_store.py). tests/integration/test_cli_lean.py compares both.
"""
from __future__ import annotations

from pathlib import Path

from bot.cli_lean_store import LeanReader, NotLean, database_path, store_paths
from bot.cli_shared import out, print_json

# core.model.ACTIVE and bot.cli_waiting's words, spelled out: importing them loads pydantic (a test keeps them equal).
ACTIVE_STATES = ("PENDING_APPROVAL", "QUEUED", "STARTING", "RUNNING", "RESTARTING", "STOPPING")
WAITS_FOR_SERVE = ("QUEUED", "RESTARTING")  # PENDING_APPROVAL waits too, but its notes need the full path
NO_SERVE = "no `expbot serve` is running for this database: it will start when one does"


def _now():  # noqa: ANN202 - the store's clock, as the full path's Reader uses it
    from adapters.clock import SystemClock

    return SystemClock().now()


def lean_ls(all_: bool, owner: str | None, project: str | None, group: str | None, limit: int,
            as_json: bool) -> bool:
    """Print what `expbot ls` prints (True), or nothing when the full path must answer (False)."""
    from bot import render

    try:
        reader = LeanReader(database_path())
        try:
            exps = reader.listing(None if all_ else ACTIVE_STATES, owner, project, group, limit)
        finally:
            reader.close()
        if group is not None:  # as bot.cli_groups.in_launch_order: G-1, G-2, ... G-10, newest launch first
            exps.sort(key=lambda e: (-e.created_at.timestamp(), len(e.name), e.name))
        now = _now()
        shown = ([render.experiment_dict(e, now) for e in exps] if as_json
                 else render.experiments_table(exps, now) if exps else None)
    except NotLean:
        return False
    if as_json:
        print_json(shown)
    elif shown is None:
        out.print(render.empty_listing(all_, owner, project, group))
    else:
        out.print(shown)
    return True


def lean_status(name: str, as_json: bool) -> bool:
    """Print what `expbot status NAME` prints for one experiment (True), or nothing (False)."""
    from bot import render

    try:
        database, runs = store_paths()
        reader = LeanReader(database)
        try:
            exp = reader.find(name)
            if exp.state == "PENDING_APPROVAL":
                raise NotLean("an approval's numbers come from the budgets")
            attempt = exp.current_attempt
            process = None if attempt is None or attempt.state == "ENDED" else local_process(runs, exp.id, attempt.number)
            timeline = reader.timeline(exp.id)
            now = _now()
            waits = exp.state in WAITS_FOR_SERVE
            no_serve = waits and reader.serve_missing(now)
        finally:
            reader.close()
        if as_json:
            shown = render.experiment_dict(exp, now, timeline, process) | ({"serve_running": not no_serve} if waits else {})
        else:
            shown = render.status_tables(exp, timeline, now, process)
    except NotLean:
        return False
    if as_json:
        print_json(shown)
        return True
    for table in shown:
        out.print(table)
    if no_serve:
        out.print(NO_SERVE)
    return True


def local_process(runs: Path, experiment_id: str, attempt: int) -> dict | None:
    """A live local attempt's pid and process group, as LocalRunner.process_info gives them (the same function)."""
    from adapters.local import containment
    from adapters.local.files import LAUNCH_FILE, read_json

    if not experiment_id.isalnum():
        raise NotLean("an experiment id the runner refuses")
    return containment.process_info(read_json(runs / experiment_id / f"attempt-{int(attempt)}" / LAUNCH_FILE))
