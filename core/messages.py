"""Human sentences for events: what a thread reply or a log line says."""
from __future__ import annotations

from typing import TYPE_CHECKING

from core.durations import format_duration

if TYPE_CHECKING:
    from core import events as ev


def _resume(where: str | None) -> str:
    return f"from checkpoint {where}" if where else "from scratch"


def money(amount: float, currency: str = "USD") -> str:
    """An amount as people read it: '$1,234.50', or '1,234.50 EUR'."""
    return f"${amount:,.2f}" if currency == "USD" else f"{amount:,.2f} {currency}"


def gpus_label(gpus: int, gpu_type: str | None, nodes: int = 1, none: str = "CPU only") -> str:
    """What an experiment runs on: '2x a100', '4 nodes x 8 a100', '3 nodes, CPU only' or `none`."""
    kind = gpu_type or "gpu"
    if nodes <= 1:
        return f"{gpus}x {kind}" if gpus else none
    return f"{nodes} nodes x {gpus} {kind}" if gpus else f"{nodes} nodes, {none}"


def owner_or_admin(owner: str, doing: str) -> str:
    """The one refusal of what only an experiment's owner or an admin may do, on every path."""
    return f"only {owner} (the owner) or an admin may {doing}"


def describe(event: ev.Event) -> str:
    """One line describing the event, e.g. 'attempt 2 started, resuming from checkpoint ...'."""
    # By kind, not by class: the CLI's lean reads describe stored events without loading pydantic.
    match event.kind:
        case "ExperimentLaunched":
            gpus = gpus_label(event.gpus, event.gpu_type, event.nodes, none="no GPUs")
            group = f" (sweep {event.group})" if event.group else ""
            return f"launched by {event.owner} in project {event.project} with {gpus}{group}"
        case "ExperimentQueued":
            return f"queued: {event.reason}"
        case "AttemptStarted":
            return f"attempt {event.attempt} started, {_resume(event.resumed_from)}"
        case "AttemptRunning":
            return f"attempt {event.attempt} is running"
        case "AttemptEnded":
            code = "no exit code" if event.exit_code is None else f"exit code {event.exit_code}"
            where = f" on {event.node}" if event.node else ""
            return f"attempt {event.attempt} ended{where} ({code}, {event.failure_class}): {event.reason}"
        case "RestartScheduled":
            wait = format_duration(event.delay_seconds) if event.delay_seconds >= 1 else "now"
            spends = {"user": "restart", "infra": "infrastructure restart", "none": "not counted"}
            counted = f" {event.spent} of {event.limit}" if event.limit is not None and event.spent else ""
            avoiding = f", avoiding {', '.join(event.avoid_nodes)}" if event.avoid_nodes else ""
            avoiding += f" ({event.note})" if event.note else ""
            return (
                f"restarting as attempt {event.next_attempt} in {wait} "
                f"({spends.get(event.budget, event.budget)}{counted}), {_resume(event.resume_from)}{avoiding}"
            )
        case "NodeUnhealthy":
            return (f"node {event.node}: {event.faults} hardware or network failures of {event.experiments} "
                    f"experiments in {format_duration(event.window_hours * 3600)}, last: {event.last_reason}")
        case "ExperimentSucceeded":
            return f"succeeded after {event.attempts} attempt{'s' if event.attempts != 1 else ''}"
        case "ExperimentFailed":
            return f"failed after {event.attempts} attempt{'s' if event.attempts != 1 else ''}: {event.reason}"
        case "StopRequested":
            kill = f"after {format_duration(event.grace_seconds)}" if event.grace_seconds >= 1 else "at once"
            return f"stop asked by {event.by}: ending attempt {event.attempt} (SIGTERM, then SIGKILL {kill})"
        case "ExperimentStopped":
            # The default reason is "stopped by X" already: do not say who twice.
            said = "" if event.reason in ("", f"stopped by {event.by}") else f": {event.reason}"
            return f"stopped by {event.by}{said}"
    return _describe_governance(event)


def _describe_governance(event: ev.Event) -> str:
    """describe() for the approval and idle-GPU events."""
    match event.kind:
        case "ApprovalRequested":
            over = "; ".join(
                f"{b['scope']} {b['name']}: {money(b['spent'], event.currency)} spent + "
                f"{money(b['committed'], event.currency)} committed of {money(b['limit'], event.currency)}"
                for b in event.budgets
            )
            return (f"waiting for approval: projected {money(event.projected_cost, event.currency)} "
                    f"would overrun the budget ({over})")
        case "LaunchApproved":
            return f"approved by {event.by}; queued to start"
        case "LaunchDenied":
            return f"not launched: {event.reason}"
        case "IdleWarning":
            then = (f"it will be stopped in {format_duration(event.grace_minutes * 60)} unless kept"
                    if event.auto_stop else "keep or stop it")
            return (f"GPUs idle for {format_duration(event.idle_minutes * 60)}; asked {event.owner} "
                    f"to keep or stop it ({then})")
        case "IdleKept":
            return f"kept running by {event.by} until {event.until:%Y-%m-%d %H:%M} UTC despite idle GPUs"
    return event.kind
