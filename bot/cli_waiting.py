"""What an experiment that has not started waits for, as `launch` and `status` tell it: an approver
(with the numbers behind the request), or an `expbot serve` that is not running."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from core.events import ApprovalRequested
from core.messages import money
from core.model import Experiment, State

NO_SERVE = "no `expbot serve` is running for this database: it will start when one does"
# States that only a running serve moves on (a person's decision aside).
WAITS_FOR_SERVE = (State.QUEUED, State.PENDING_APPROVAL, State.RESTARTING)


def serve_missing(session_factory: Any, now: datetime) -> bool:
    """True when no serve has beaten recently for this database."""
    from adapters.db.serve_heartbeats import SqlServeHeartbeats

    return not SqlServeHeartbeats(session_factory).alive(now)


def approval_request(views: Any, exp: Experiment) -> ApprovalRequested | None:
    """The request a pending launch waits on (a sweep's first member carries it for all)."""
    members = views.experiments.by_launch(exp.launch_id) if exp.launch_id else [exp]
    first = members[0] if members else exp
    requests = [e for e in views.outbox.for_experiment(first.id) if isinstance(e, ApprovalRequested)]
    return requests[-1] if requests else None


def approvers_text(settings: Any) -> str:
    """Who may approve, as configured (Slack approvers are the CLI's too, by EXPBOT_USER)."""
    people = sorted(settings.slack_approver_ids())
    group = settings.slack_approver_group
    if not people and not group:
        return "nobody: no approvers are configured (EXPBOT_SLACK_APPROVERS)"
    named = ", ".join(people)
    if group:
        named += (" and " if named else "") + f"members of the Slack user group {group}"
    return named


def budgets_now(uow: Any, config: Any, prices: Any, exp: Experiment, projected: float,
                now: datetime) -> list[dict[str, Any]]:
    """Each budget the launch counts against as it stands now (an approver decides on today's numbers)."""
    from core.approvals import budget_statuses

    statuses = budget_statuses(uow, config, prices, exp.spec.project, exp.owner, now)
    return [{"scope": s.limit.scope, "name": s.limit.name, "limit": s.limit.monthly, "spent": round(s.spent, 2),
             "committed": round(s.committed, 2), "would_overrun": projected > s.remaining + 1e-9} for s in statuses]


def approval_lines(request: ApprovalRequested | None, budgets: list[dict[str, Any]], settings: Any) -> list[str]:
    """The numbers behind a pending launch: projected cost, its budgets now, who may approve."""
    if request is None:  # stored before requests were events, or its timeline was cleared
        return [f"waiting for a budget approver; who may approve: {approvers_text(settings)}"]
    cur = request.currency
    lines = [f"waiting for approval: projected to cost up to {money(request.projected_cost, cur)}"]
    for b in budgets:
        verdict = "would overrun it" if b["would_overrun"] else "fits it now"
        lines.append(f"  {b['scope']} {b['name']}: budget {money(b['limit'], cur)}, {money(b['spent'], cur)} spent "
                     f"this month, {money(b['committed'], cur)} committed to running experiments - {verdict}")
    name = request.experiment_name
    if settings.slack_approver_ids() or settings.slack_approver_group:
        lines.append(f"who may approve: {approvers_text(settings)} (`expbot approve {name}` or `expbot deny {name}`)")
    else:  # naming commands nobody may run helps nobody: say what makes someone an approver
        lines.append(f"who may approve: {approvers_text(settings)}: list a user there (their EXPBOT_USER, or "
                     f"login name) and they may `expbot approve {name}` or `expbot deny {name}`")
    lines.append(f"denied unless approved by {request.expires_at.isoformat(timespec='seconds')}")
    return lines


def approval_dict(request: ApprovalRequested | None, budgets: list[dict[str, Any]], settings: Any) -> dict[str, Any]:
    """The same, for --json (`budgets`: as when the request was made; `budgets_now`: today's)."""
    data: dict[str, Any] = {"approvers": sorted(settings.slack_approver_ids()),
                            "approver_group": settings.slack_approver_group, "budgets_now": budgets}
    if request is not None:
        data |= {"projected_cost": request.projected_cost, "currency": request.currency,
                 "budgets": request.budgets, "expires_at": request.expires_at.isoformat()}
    return data


def waiting_notes(reader: Any, exp: Experiment, as_json: bool = False) -> Any:
    """What `status` adds for an experiment that waits: lines, or a dict for --json."""
    if exp.state not in WAITS_FOR_SERVE:
        return {} if as_json else []
    pending = exp.state == State.PENDING_APPROVAL
    request, budgets = None, []
    if pending:
        with reader.reading() as views:
            request = approval_request(views, exp)
        if request is not None:
            from adapters.db.uow import SqlUnitOfWork

            settings = reader.settings
            with SqlUnitOfWork(reader.sessions) as uow:
                budgets = budgets_now(uow, settings.budget_config(), settings.prices(), exp, request.projected_cost,
                                      reader.now())
    no_serve = reader.serve_missing()
    if as_json:
        data: dict[str, Any] = {"serve_running": not no_serve}
        if pending:
            data["approval"] = approval_dict(request, budgets, reader.settings)
        return data
    lines = approval_lines(request, budgets, reader.settings) if pending else []
    return lines + ([NO_SERVE] if no_serve else [])
