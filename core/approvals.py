"""Budget admission and the approval flow: launches that would overrun a budget wait for an approver."""
from __future__ import annotations

import math
from datetime import datetime

from core import commands, events
from core.budget import PROJECT, USER, BudgetConfig, BudgetStatus, Limit, exceeded, limits_for, month_window
from core.cost import Prices
from core.durations import format_duration
from core.errors import ExpbotError, NotAllowed, NotFound, SpecError
from core.grammar_values import parse_project
from core.model import Experiment, State
from core.ports import Clock, UnitOfWork

# States whose remaining runtime may still be spent (a launch waiting for approval commits nothing).
COMMITTING = (State.QUEUED, State.STARTING, State.RUNNING, State.RESTARTING)


def budget_statuses(
    uow: UnitOfWork, config: BudgetConfig, prices: Prices, project: str, owner: str, now: datetime
) -> list[BudgetStatus]:
    """This month's spend and commitments for each budget a launch by `owner` in `project` counts against."""
    return statuses_of(uow, limits_for(config, uow.budgets.overrides(), project, owner), config, prices, now)


def statuses_of(
    uow: UnitOfWork, limits: list[Limit], config: BudgetConfig, prices: Prices, now: datetime
) -> list[BudgetStatus]:
    """This month's spend, and what running experiments may still spend, for each budget."""
    start, end, _ = month_window(now, config.timezone)
    statuses = []
    for limit in limits:
        scope_filter = limit.selector()
        spent = uow.costs.spent(start=start, end=end, now=now, **scope_filter)
        active = uow.experiments.list(states=COMMITTING, **scope_filter)
        committed = sum(prices.hourly_rate(e.spec) * e.remaining_runtime(now).total_seconds() / 3600 for e in active)
        statuses.append(BudgetStatus(limit, spent, committed))
    return statuses


def admit(
    uow: UnitOfWork, members: list[Experiment], config: BudgetConfig, prices: Prices, now: datetime
) -> None:
    """Hold the launch for approval when its projected cost would overrun a budget."""
    first = members[0]
    projected = sum(prices.projected_cost(e.spec) for e in members)
    if projected <= 0:
        return
    over = exceeded(budget_statuses(uow, config, prices, first.spec.project, first.owner, now), projected)
    if not over:
        return
    request = events.ApprovalRequested(
        experiment_id=first.id, experiment_name=first.spec.group or first.name, occurred_at=now,
        owner=first.owner, launch_id=first.launch_id, currency=prices.currency, projected_cost=round(projected, 2),
        budgets=[{"scope": s.limit.scope, "name": s.limit.name, "limit": s.limit.monthly,
                  "spent": round(s.spent, 2), "committed": round(s.committed, 2)} for s in over],
        expires_at=now + config.approval_ttl,
    )
    for index, member in enumerate(members):
        member.await_approval(now, request if index == 0 else None)


def _pending(uow: UnitOfWork, launch_id: str) -> list[Experiment]:
    members = uow.experiments.by_launch(launch_id)
    if not members:
        raise NotFound("that launch no longer exists")
    waiting = [m for m in members if m.state == State.PENDING_APPROVAL]
    if not waiting:
        raise ExpbotError(f"{members[0].spec.group or members[0].name} is no longer waiting for approval "
                          f"({members[0].state}: {members[0].state_reason})")
    return waiting


def approve(cmd: commands.ApproveLaunch, uow: UnitOfWork, *, clock: Clock) -> list[Experiment]:
    """An approver lets the launch run; audited."""
    if not cmd.as_approver:
        raise NotAllowed("only budget approvers may approve launches")
    with uow:
        now = clock.now()
        waiting = _pending(uow, cmd.launch_id)
        for member in waiting:
            member.approve(cmd.by, now)
        uow.audit.record(at=now, actor=cmd.by, action="approve", experiment_id=waiting[0].id,
                         detail={"launch_id": cmd.launch_id, "experiments": [m.name for m in waiting]})
        uow.commit()
    return waiting


def deny(cmd: commands.DenyLaunch, uow: UnitOfWork, *, clock: Clock) -> list[Experiment]:
    """An approver refuses the launch; audited."""
    if not cmd.as_approver:
        raise NotAllowed("only budget approvers may deny launches")
    with uow:
        now = clock.now()
        waiting = _pending(uow, cmd.launch_id)
        reason = cmd.reason or f"denied by {cmd.by}"
        for member in waiting:
            member.deny(cmd.by, reason, now)
        uow.audit.record(at=now, actor=cmd.by, action="deny", experiment_id=waiting[0].id,
                         detail={"launch_id": cmd.launch_id, "reason": reason})
        uow.commit()
    return waiting


def expire(cmd: commands.ExpireApprovals, uow: UnitOfWork, *, clock: Clock, config: BudgetConfig) -> int:
    """Deny every request nobody answered within the time to live; returns how many experiments."""
    with uow:
        now = clock.now()
        expired = [e for e in uow.experiments.list(states=[State.PENDING_APPROVAL])
                   if e.updated_at is not None and now - e.updated_at >= config.approval_ttl]
        for exp in expired:
            exp.deny("expbot", f"approval request expired after {format_duration(config.approval_ttl)}", now)
            uow.audit.record(at=now, actor="expbot", action="expire", experiment_id=exp.id,
                             detail={"launch_id": exp.launch_id})
        uow.commit()
    return len(expired)


def budget_name_problem(scope: str, name: str, projects: tuple[str, ...] = ()) -> str | None:
    """Why a budget under this name could never apply to a launch (None: it can)."""
    if scope == PROJECT:
        try:
            parse_project(name, projects, option="project")  # a name no launch can carry matches nothing
        except SpecError as e:
            return str(e)
        return None
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        return f"user {name!r} is not a user name or id: give one word, like ana or U012AB3CD"
    return None


def set_budget(cmd: commands.SetBudget, uow: UnitOfWork, *, clock: Clock, projects: tuple[str, ...] = ()) -> None:
    """An admin sets a monthly budget; audited. Refuses one that could never apply to a launch."""
    if not cmd.as_admin:
        raise NotAllowed("only admins may set budgets")
    if cmd.scope not in (PROJECT, USER):
        raise ExpbotError(f"budget scope must be 'project' or 'user', not {cmd.scope!r}")
    if not (math.isfinite(cmd.monthly_limit) and cmd.monthly_limit >= 0):
        raise ExpbotError(f"a budget must be an amount of zero or more, like 5000, not {cmd.monthly_limit}")
    if (problem := budget_name_problem(cmd.scope, cmd.name, projects)) is not None:
        raise ExpbotError(problem)
    with uow:
        now = clock.now()
        uow.budgets.set(scope=cmd.scope, name=cmd.name, monthly_limit=cmd.monthly_limit, by=cmd.by, at=now)
        uow.audit.record(at=now, actor=cmd.by, action="budget-set", experiment_id=None,
                         detail={"scope": cmd.scope, "name": cmd.name, "monthly_limit": cmd.monthly_limit})
        uow.commit()
