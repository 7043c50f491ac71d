"""How experiments look on the command line: rich tables, or JSON for scripts."""
from __future__ import annotations

import shlex
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table

from core.durations import format_duration
from core.messages import describe, gpus_label

if TYPE_CHECKING:  # duck-typed: `ls` and `status` on SQLite draw bot.cli_lean_store's views, without pydantic
    from core.events import Event
    from core.model import Attempt, Experiment


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def attempt_dict(attempt: Attempt) -> dict[str, Any]:
    """One attempt as JSON-ready data."""
    return {
        "number": attempt.number,
        "state": str(attempt.state),
        "started_at": _iso(attempt.started_at),
        "ended_at": _iso(attempt.ended_at),
        "exit_code": attempt.exit_code,
        "reason": attempt.reason,
        "failure_class": str(attempt.failure_class) if attempt.failure_class else None,
        "resumed_from": attempt.resumed_from,
        "node": attempt.node,
    }


def experiment_dict(
    exp: Experiment, now: datetime, timeline: list[Event] | None = None, process: dict | None = None
) -> dict[str, Any]:
    """One experiment as JSON-ready data (with its event timeline when given)."""
    data: dict[str, Any] = {
        "id": exp.id,
        "name": exp.name,
        "group": exp.spec.group,
        "owner": exp.owner,
        "project": exp.spec.project,
        "state": str(exp.state),
        "reason": exp.state_reason,
        "gpus": exp.spec.gpus,  # per node
        "nodes": exp.spec.nodes,
        "gpu_type": exp.spec.gpu_type,
        "command": list(exp.spec.command),
        "created_at": _iso(exp.created_at),
        "updated_at": _iso(exp.updated_at),
        "runtime_seconds": round(exp.runtime(now).total_seconds(), 1),
        "max_runtime_seconds": exp.spec.max_runtime.total_seconds(),
        "restarts": {"user": exp.user_restarts, "infra": exp.infra_restarts, "uncounted": exp.free_restarts},
        "max_restarts": exp.spec.max_restarts,
        "max_preemptions": exp.spec.max_preemptions,
        "next_attempt_at": _iso(exp.next_attempt_at),
        "attempts": [attempt_dict(a) for a in exp.attempts],
    }
    if process is not None:
        data["process"] = process  # the current local attempt's pid, process group and cgroup
    if timeline is not None:
        data["events"] = [{"at": _iso(e.occurred_at), "kind": e.kind, "text": describe(e)} for e in timeline]
    return data


def empty_listing(all_: bool, owner: str | None = None, project: str | None = None, group: str | None = None) -> str:
    """What `expbot ls` says when nothing matches, naming the filters ('no experiments of sweep sw ...')."""
    filters = (("of sweep", group), ("owned by", owner), ("in project", project))
    where = "".join(f" {label} {value}" for label, value in filters if value is not None)
    return f"no experiments{where}" + ("" if all_ else " running (try --all)")


def _state(exp: Experiment) -> str:
    # "SUCCEEDED - succeeded" says it twice: a reason is shown only when it adds something.
    reason = exp.state_reason
    return f"{exp.state} - {reason}" if reason and reason.lower() != str(exp.state).lower() else f"{exp.state}"


def _gpus(exp: Experiment) -> str:
    # "-" for a one-node CPU-only run (the table's quiet default); a gang always says its nodes.
    return gpus_label(exp.spec.gpus, exp.spec.gpu_type, exp.spec.nodes) if exp.spec.gpus or exp.spec.nodes > 1 else "-"


def experiments_table(experiments: list[Experiment], now: datetime) -> Table:
    """The `expbot ls` table."""
    table = Table(show_lines=False)
    for column in ("NAME", "STATE", "OWNER", "PROJECT", "GPUS", "ATTEMPTS", "RUNTIME", "AGE", "REASON"):
        table.add_column(column, overflow="fold")
    for exp in experiments:
        table.add_row(
            exp.name, str(exp.state), exp.owner, exp.spec.project, _gpus(exp), str(len(exp.attempts)),
            format_duration(exp.runtime(now)), format_duration(now - exp.created_at), exp.state_reason,
        )
    return table


def process_text(process: dict) -> str:
    """Where the live attempt runs as `status` shows it: pid and process group (local), pods and nodes."""
    if "pods" in process:  # Kubernetes: what `kubectl -n NS delete pod` or `describe node` takes
        return "; ".join(f"pod {pod['name']} on node {pod['node'] or '(not scheduled)'} ({pod['phase']})"
                         for pod in process["pods"]) + f" in namespace {process['namespace']}"
    where = f", cgroup {process['cgroup']}" if process.get("cgroup") else f" ({process.get('mechanism')})"
    ranks = f", {process['nodes']} ranks meeting at port {process['master_port']}" if process.get("nodes") else ""
    return f"pid {process['pid']}, process group {process['pgid']}{where}{ranks}"


def status_tables(exp: Experiment, timeline: list[Event], now: datetime, process: dict | None = None) -> list[Table]:
    """The `expbot status NAME` view: summary, attempts, then the event timeline."""
    summary = Table(show_header=False, title=f"{exp.name} ({exp.id[:8]})")
    summary.add_column("field", style="bold")
    summary.add_column("value", overflow="fold")
    rows = [
        ("state", _state(exp)),
        ("owner / project", f"{exp.owner} / {exp.spec.project}"),
        ("command", shlex.join(exp.spec.command)),
        ("gpus", _gpus(exp)),
        ("runtime", f"{format_duration(exp.runtime(now))} of {format_duration(exp.spec.max_runtime)}"),
        ("restarts", f"{exp.user_restarts}/{exp.spec.max_restarts} user, "
                     f"{exp.infra_restarts}/{exp.spec.max_preemptions} infrastructure, {exp.free_restarts} uncounted"),
    ]
    if exp.next_attempt_at:
        rows.append(("next attempt", exp.next_attempt_at.isoformat(timespec="seconds")))
    if process is not None:
        rows.append((f"attempt {len(exp.attempts)}", process_text(process)))
    for field, value in rows:
        summary.add_row(field, value)
    attempts = Table(title="attempts")
    for column in ("#", "STATE", "STARTED", "RAN", "NODE", "EXIT", "CLASS", "REASON", "RESUMED FROM"):
        attempts.add_column(column, overflow="fold")
    for a in exp.attempts:
        attempts.add_row(
            str(a.number), str(a.state), a.started_at.strftime("%H:%M:%S") if a.started_at else "-",
            format_duration(a.running_time(now)), a.node or "-", "-" if a.exit_code is None else str(a.exit_code),
            str(a.failure_class or "-"), a.reason or "-", a.resumed_from or "-",
        )
    events = Table(title="timeline")
    events.add_column("AT")
    events.add_column("EVENT", overflow="fold")
    for e in timeline:
        events.add_row(e.occurred_at.strftime("%Y-%m-%d %H:%M:%S"), describe(e))
    return [summary, attempts, events]
