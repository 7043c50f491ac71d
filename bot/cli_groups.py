"""Sweeps as groups on the command line: what a launch made, `status G`, `stop G`."""
from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from bot.cli_shared import err, out, print_json
from core.errors import ExpbotError
from core.model import ACTIVE, Experiment, State

_STOP_SLACK_SECONDS = 15.0  # beyond the grace: serve's next pass, and the kill itself


def values_text(exp: Experiment) -> str:
    """A member's sweep values as the launch line gave them: 'lr=0.1 bs=32'."""
    return " ".join(f"{key}={value}" for key, value in exp.spec.sweep_values.items())


def print_launched(bot: Any, result: Any) -> None:
    """What `launch` made: the experiment, or the sweep and each member with its values; then what it waits for."""
    from bot.cli_waiting import NO_SERVE, approval_lines, approval_request, budgets_now, serve_missing

    exps = result.experiments
    note = " (already launched)" if result.duplicate else ""
    group = exps[0].spec.group if exps else None
    if group is None:
        for exp in exps:
            out.print(f"{exp.name}: {exp.state}{note} - `expbot status {exp.name}` to follow it")
    else:
        out.print(f"sweep {group}: {len(exps)} experiments{note} - `expbot status {group}` to follow them, "
                  f"`expbot stop {group}` to stop them all")
        for exp in exps:
            out.print(f"  {exp.name}: {exp.state}  {values_text(exp)}")
    if exps and exps[0].state == State.PENDING_APPROVAL:
        with bot.uow_factory() as uow:
            request = approval_request(uow, exps[0])
            # The numbers admission just used, for every budget the launch counts against.
            budgets = (budgets_now(uow, bot.budgets, bot.prices, exps[0], request.projected_cost, bot.clock.now())
                       if request else [])
        for line in approval_lines(request, budgets, bot.settings):
            out.print(line)
    if any(e.state in (State.QUEUED, State.PENDING_APPROVAL) for e in exps) and serve_missing(
            bot.session_factory, bot.clock.now()):
        out.print(NO_SERVE)


def in_launch_order(experiments: list[Experiment]) -> list[Experiment]:
    """Newest launch first, each launch's members as launched (G-2 before G-10)."""
    return sorted(experiments, key=lambda e: (-e.created_at.timestamp(), len(e.name), e.name))


def newest_launch(experiments: list[Experiment]) -> list[Experiment]:
    """The members of the group's newest launch, in launch order (a name reused later is a new sweep)."""
    if not experiments:
        return []
    newest = max(experiments, key=lambda e: e.created_at)
    return in_launch_order([e for e in experiments if e.launch_id == newest.launch_id])


def group_members(views: Any, name: str) -> list[Experiment]:
    """The members of sweep `name`'s newest launch, or [] when `name` is an experiment's or no group's."""
    if views.experiments.get_by_name(name) is not None:
        return []  # an experiment of that name: `name` means it
    return newest_launch(views.experiments.list(group=name))


def show_group(reader: Any, name: str, as_json: bool) -> bool:
    """Print sweep `name`'s summary (True), or nothing when `name` is not a sweep (False)."""
    from bot import render
    from bot.cli_waiting import WAITS_FOR_SERVE, waiting_notes
    from core.durations import format_duration

    with reader.reading() as views:
        members = group_members(views, name)
    if not members:
        return False
    now, currency = reader.now(), reader.settings.prices().currency
    counts = Counter(str(m.state) for m in members)
    cost = sum(m.cost(now) for m in members)
    # What the waiting members wait for (an approver, a serve): the sweep's request is its first member's.
    waiting = next((m for m in members if m.state in WAITS_FOR_SERVE), None)
    if as_json:
        print_json({"group": name, "launch_id": members[0].launch_id, "counts": dict(counts), "cost": round(cost, 6),
                    "currency": currency,
                    "members": [render.experiment_dict(m, now) | {"values": m.spec.sweep_values,
                                                                  "cost": round(m.cost(now), 6)} for m in members]}
                   | (waiting_notes(reader, waiting, as_json=True) if waiting else {}))
        return True
    from rich.table import Table

    from core.messages import money

    summary = ", ".join(f"{n} {state}" for state, n in counts.most_common())
    out.print(f"sweep {name}: {len(members)} experiments launched by {members[0].owner} - {summary}; "
              f"cost so far {money(cost, currency)}")
    table = Table()
    for column in ("NAME", "STATE", "VALUES", "ATTEMPTS", "RUNTIME", "COST", "REASON"):
        table.add_column(column, overflow="fold")
    for m in members:
        table.add_row(m.name, str(m.state), values_text(m), str(len(m.attempts)), format_duration(m.runtime(now)),
                      money(m.cost(now), currency), m.state_reason)
    out.print(table)
    for line in waiting_notes(reader, waiting) if waiting else []:
        out.print(line)
    return True


def stop_group(bot: Any, name: str, *, reason: str, by: str, yes: bool, wait: bool) -> bool:
    """Stop every active member of sweep `name` (True), or nothing when `name` is not a sweep (False)."""
    from core import commands

    with bot.uow_factory() as uow:
        members = group_members(uow, name)
    if not members:
        return False
    active = [m for m in members if m.state in ACTIVE]
    if not active:
        out.print(f"sweep {name}: nothing to stop - every member has ended ({_counts(members)})")
        return True
    if not yes:
        _confirm(name, active)
    stopping = []
    for member in active:
        try:
            exp = bot.bus.handle(commands.StopExperiment(name=member.id, by=by, as_admin=True, reason=reason))
        except ExpbotError as e:  # it ended meanwhile: say so, stop the others
            out.print(f"  {member.name}: {e}")
            continue
        out.print(f"  {exp.name}: {exp.state}" + ("" if exp.state == State.STOPPING else f" ({exp.state_reason})"))
        if not exp.is_terminal:
            stopping.append(exp)
    grace = bot.settings.stop_grace_seconds
    if stopping:
        out.print(f"sweep {name}: {len(stopping)} STOPPING - expbot serve sends SIGTERM, then SIGKILL after {grace:g}s")
    if wait and stopping:
        _wait_all_stopped(bot, name, stopping, deadline=time.monotonic() + grace + _STOP_SLACK_SECONDS)
    return True


def _counts(members: list[Experiment]) -> str:
    return ", ".join(f"{n} {state}" for state, n in Counter(str(m.state) for m in members).most_common())


def _confirm(name: str, active: list[Experiment]) -> None:
    """Ask before stopping several experiments at once; refuse where nobody can answer."""
    names = ", ".join(m.name for m in active[:5]) + (f" and {len(active) - 5} more" if len(active) > 5 else "")
    if not sys.stdin.isatty():
        raise ExpbotError(f"`expbot stop {name}` would stop {len(active)} experiments of sweep {name} ({names}); "
                          "add --yes to confirm (there is no terminal to ask on)")
    import typer

    if not typer.confirm(f"Stop {len(active)} experiments of sweep {name} ({names})?", default=False):
        out.print("nothing stopped")
        sys.exit(1)  # not typer.Exit: main runs click outside standalone mode, where Exit's code is lost


def _wait_all_stopped(bot: Any, name: str, stopping: list[Experiment], deadline: float) -> None:
    """Poll until every member's stop is recorded; Ctrl-C leaves the stops to serve."""
    left = {e.id: e.name for e in stopping}
    try:
        while left and time.monotonic() < deadline:
            with bot.uow_factory() as uow:
                for exp_id in list(left):
                    exp = uow.experiments.get(exp_id)
                    if exp is None or exp.is_terminal:
                        out.print(f"  {left.pop(exp_id)}: {exp.state if exp else 'gone'}")
            if left:
                time.sleep(0.2)
    except KeyboardInterrupt:
        err.print(f"{len(left)} of sweep {name} still STOPPING; expbot serve finishes the stops")
        raise
    if left:
        raise ExpbotError(f"{', '.join(left.values())} still STOPPING: no `expbot serve` has carried out the stop "
                          f"yet; it will be when one runs (`expbot status {name}` to follow)")
