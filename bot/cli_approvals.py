"""Approvals without Slack: `expbot approve NAME` and `expbot deny NAME`, by the configured approvers.

The same core command as Slack's Approve / Deny buttons (core/approvals.py), so the decision, its
audit entry and its events (the thread's "approved by ...", the supervisor's wake-up) are the same.
Who acts is EXPBOT_USER (else the login name), checked against the configured approvers.
"""
from __future__ import annotations

from typing import Any

import typer

from bot.cli_shared import app, current_user, open_expbot, out
from core.errors import NotAllowed


@app.command()
def approve(name: str = typer.Argument(..., help="The waiting experiment's or sweep's name (or id).")) -> None:
    """Let a launch that would overrun a budget run anyway (approvers only: every member of a sweep)."""
    from core import commands

    bot, user = open_expbot(), current_user()
    launch_id = _launch_of(bot, name)
    done = _as_approver(bot, user, lambda allowed: bot.bus.handle(
        commands.ApproveLaunch(launch_id=launch_id, by=user, as_approver=allowed)))
    out.print(f"approved {_what(done)} - queued to start")
    _say_if_nothing_runs(bot)


@app.command()
def deny(
    name: str = typer.Argument(..., help="The waiting experiment's or sweep's name (or id)."),
    reason: str = typer.Option("", help="Why, for the owner and the record."),
) -> None:
    """Refuse a launch waiting for a budget approver (approvers only)."""
    from core import commands

    bot, user = open_expbot(), current_user()
    launch_id = _launch_of(bot, name)
    done = _as_approver(bot, user, lambda allowed: bot.bus.handle(
        commands.DenyLaunch(launch_id=launch_id, by=user, as_approver=allowed, reason=reason)))
    out.print(f"denied {_what(done)}: {done[0].state_reason}")


def _launch_of(bot: Any, name: str) -> str:
    """The launch `name` belongs to: a sweep's newest launch, else the experiment's (name, id or prefix)."""
    from bot.cli_groups import group_members
    from core.lookup import find_experiment

    with bot.uow_factory() as uow:
        members = group_members(uow, name)
        exp = members[0] if members else find_experiment(uow.experiments, name, " (see `expbot ls --all`)")
    return exp.launch_id or exp.id


def is_approver(bot: Any, user: str) -> bool:
    """Whether `user` is a configured approver (listed, or in the approver user group when Slack is on)."""
    settings = bot.settings
    if user in settings.slack_approver_ids():
        return True
    if settings.slack_approver_group and bot.slack_client is not None:
        from bot.slack.auth import Admins  # Slack's libraries load only for a group that needs asking

        return Admins(bot.slack_client, frozenset(), settings.slack_approver_group).is_admin(user)
    return False


def _as_approver(bot: Any, user: str, decide: Any) -> Any:
    """Run the decision as `user`; core refuses a non-approver, and the refusal says who may."""
    from bot.cli_waiting import approvers_text

    try:
        return decide(is_approver(bot, user))
    except NotAllowed as e:
        raise NotAllowed(f"{e}: {user} (EXPBOT_USER) is not one; who may approve: "
                         f"{approvers_text(bot.settings)}") from None


def _what(done: list) -> str:
    first = done[0]
    if first.spec.group:
        return f"sweep {first.spec.group} ({len(done)} experiments)"
    return first.name


def _say_if_nothing_runs(bot: Any) -> None:
    from bot.cli_waiting import NO_SERVE, serve_missing

    if serve_missing(bot.session_factory, bot.clock.now()):
        out.print(NO_SERVE)
