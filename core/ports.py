"""Ports: what core needs from the outside world, as Protocols. Adapters implement them."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from core.events import Event
from core.model import Experiment, State
from core.spec import ExperimentSpec


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


# --- store -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeFault:
    """One hardware or network failure of an attempt on a node (a row of failures_on_node)."""

    experiment_id: str
    attempt: int
    ended_at: datetime
    reason: str


class ExperimentRepository(Protocol):
    def add(self, experiment: Experiment) -> None:
        """Stage a new experiment; on commit DuplicateLaunch if its idempotency key exists,
        NameInUse if an active experiment has its name."""
        ...

    def get(self, experiment_id: str) -> Experiment | None:
        """The experiment with this id, or None."""
        ...

    def get_by_name(self, name: str) -> Experiment | None:
        """The newest experiment with this name, or None."""
        ...

    def get_by_idempotency_key(self, key: str) -> Experiment | None:
        """The experiment stored with exactly this idempotency key, or None."""
        ...

    def by_id_prefix(self, prefix: str, limit: int = 2) -> list[Experiment]:
        """At most `limit` experiments whose id starts with `prefix` (two tell an ambiguous prefix)."""
        ...

    def by_launch(self, launch_id: str) -> list[Experiment]:
        """Every experiment of one launch request (a sweep group), in launch order."""
        ...

    def failures_on_node(self, node: str, since: datetime, failure_classes: list[str]) -> list[NodeFault]:
        """Attempts on `node` that ended since `since` with one of these failure classes, oldest first."""
        ...

    def list(
        self,
        *,
        states: Iterable[State] | None = None,
        owner: str | None = None,
        project: str | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> list[Experiment]:
        """Experiments matching every given filter, newest first."""
        ...

    def active(self) -> list[Experiment]:
        """Every non-terminal experiment, oldest first (the supervisor's work list)."""
        ...


class Outbox(Protocol):
    def pending(self, limit: int = 100) -> list[Event]:
        """Events not yet delivered, oldest first."""
        ...

    def mark_delivered(self, event_id: str, at: datetime) -> None:
        """Record that an event reached its destination."""
        ...

    def for_experiment(self, experiment_id: str) -> list[Event]:
        """Every event of one experiment, oldest first (its timeline)."""
        ...


class UnitOfWork(Protocol):
    """A transaction: changes to experiments and their new events commit together, or not at all."""

    experiments: ExperimentRepository
    outbox: Outbox
    audit: "AuditLog"
    budgets: "BudgetStore"
    costs: "CostQueries"

    def __enter__(self) -> "UnitOfWork": ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None:
        """Save every experiment touched (ConcurrentUpdate if one changed meanwhile) and its events."""
        ...

    def rollback(self) -> None: ...

    def collect_new_events(self) -> Iterator[Event]:
        """Events committed by this unit of work, for in-process handlers."""
        ...


# --- cluster -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptLaunch:
    """Everything a backend needs to start one attempt."""

    experiment_id: str
    experiment_name: str
    attempt: int
    spec: ExperimentSpec
    owner: str
    resume_from: str | None
    max_runtime: timedelta  # what is left of the experiment's max runtime
    avoid_nodes: tuple[str, ...] = ()  # where earlier attempts hit infrastructure failures


@dataclass(frozen=True)
class SubmitResult:
    started: bool  # False: not placed (no capacity); nothing was created
    reason: str = ""  # why it waits, e.g. "waiting for 2 free GPUs (1 of 2 in use)"


class AttemptPhase(StrEnum):
    QUEUED = "QUEUED"  # accepted but not placed (e.g. Unschedulable)
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    EXITED = "EXITED"  # ended with an exit code (or a cluster-reported termination)
    LOST = "LOST"  # the backend lost it: process vanished, node gone


@dataclass(frozen=True)
class AttemptStatus:
    """What the backend knows of one attempt right now."""

    phase: AttemptPhase
    exit_code: int | None = None
    reason: str = ""  # e.g. "OOMKilled", "Evicted", "process vanished", scheduler message
    infra: bool = False  # the backend knows it was preempted/evicted/lost its node (a fact: core.policy judges it)
    oom_killed: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_progress_at: datetime | None = None  # newest checkpoint or heartbeat
    deadline_exceeded: bool = False  # the cluster ended it at the max-runtime deadline
    needs_cleanup: bool = False  # over, but its resources linger (e.g. a pod stuck pulling an image)
    node: str | None = None  # where it runs or ran: a node name, or the local GPUs ("gpu0,gpu1")
    message: str = ""  # the last lines it left, when they come with the status (Kubernetes' termination message)
    # The cluster's own account of ending it (DisruptionTarget, Evicted...), reported whatever the exit code:
    # core.policy decides whether it outweighs the container's own end (exit 0, OOMKilled).
    disruption: str = ""


class ClusterBackend(Protocol):
    def check_fits(self, spec: ExperimentSpec) -> str | None:
        """Why this spec can never run here (e.g. more GPUs than exist), or None."""
        ...

    def submit(self, launch: AttemptLaunch) -> SubmitResult:
        """Start the attempt; idempotent: an attempt that already exists is left as it is."""
        ...

    def status(self, experiment_id: str, attempt: int) -> AttemptStatus | None:
        """The attempt's status, or None if it was never submitted."""
        ...

    def stop(self, experiment_id: str, attempt: int, grace: timedelta) -> None:
        """Terminate the attempt: polite signal, then force after `grace`."""
        ...

    def latest_checkpoint(self, experiment_id: str, pattern: str) -> str | None:
        """The newest checkpoint matching the glob, or None on a fresh start."""
        ...

    def logs(self, experiment_id: str, attempt: int, tail_lines: int | None = None) -> str:
        """The attempt's combined output (the last `tail_lines` lines if given)."""
        ...

    def release(self, experiment_id: str) -> None:
        """The experiment has ended: free what it kept between attempts (per the backend's policy)."""
        ...

    def wait_for_change(self, timeout: float) -> set[str] | None:
        """Block until some attempt changes state or `timeout` seconds pass.

        Returns the ids of the experiments that changed when the backend knows them (a watch does),
        else None: then every active experiment must be looked at. Only the backend's own changes
        end it: the supervisor's wake-ups are its own (core.passes), so nobody else wakes a backend.
        """
        ...


class Notifier(Protocol):
    def notify(self, event: Event) -> None:
        """Deliver one event (to Slack, the console...); raising leaves it in the outbox."""
        ...


# --- cost control -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpendRow:
    """Spend of one key (a project or an owner) over a window."""

    key: str
    cost: float
    gpu_hours: float


class CostQueries(Protocol):
    """Aggregations over attempt intervals (cost = hourly_rate x the part of the interval in the window).

    Running attempts (no ended_at) accrue up to `now`; intervals are clipped to [start, end).
    """

    def spent(
        self, *, start: datetime, end: datetime, now: datetime, project: str | None = None, owner: str | None = None
    ) -> float:
        """Total cost in the window, optionally of one project and/or one owner."""
        ...

    def spend_by(self, key: str, *, start: datetime, end: datetime, now: datetime) -> list[SpendRow]:
        """Cost and GPU-hours in the window grouped by "project" or "owner", most expensive first."""
        ...


class AuditLog(Protocol):
    def record(self, *, at: datetime, actor: str, action: str, experiment_id: str | None, detail: dict) -> None:
        """Append one decision to the audit trail (committed with the unit of work)."""
        ...

    def entries(self, *, experiment_id: str | None = None, action: str | None = None) -> list[dict]:
        """Audit entries, oldest first, optionally filtered."""
        ...


class BudgetStore(Protocol):
    def overrides(self) -> dict[tuple[str, str], float]:
        """Budgets set by admins at runtime: (scope, name) -> monthly limit."""
        ...

    def set(self, *, scope: str, name: str, monthly_limit: float, by: str, at: datetime) -> None:
        """Set (or replace) one budget."""
        ...

    def claim_alert(self, *, scope: str, name: str, month: str, threshold: int, at: datetime) -> bool:
        """True exactly once per (scope, name, month, threshold): whoever claims it sends the alert."""
        ...
