"""Events: facts in the past tense. Stored in the outbox with the state change, then delivered."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


def _new_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    """Base of all events; `event_id` deduplicates at-least-once delivery."""

    model_config = ConfigDict(frozen=True)
    registry: ClassVar[dict[str, type["Event"]]] = {}

    event_id: str = Field(default_factory=_new_id)
    experiment_id: str
    experiment_name: str
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event.registry[cls.__name__] = cls

    @property
    def kind(self) -> str:
        """The event's type name, as stored in the outbox."""
        return type(self).__name__

    def payload(self) -> dict[str, Any]:
        """JSON-ready fields, for the outbox."""
        return self.model_dump(mode="json")

    @staticmethod
    def from_stored(kind: str, payload: dict[str, Any]) -> "Event":
        """Rebuild an event read back from the outbox."""
        return Event.registry[kind].model_validate(payload)


class ExperimentLaunched(Event):
    owner: str
    project: str
    gpus: int  # per node
    gpu_type: str | None
    group: str | None = None
    nodes: int = 1  # events stored before multi-node read as one node


class ExperimentQueued(Event):
    reason: str


class AttemptStarted(Event):
    attempt: int
    resumed_from: str | None = None


class AttemptRunning(Event):
    attempt: int


class AttemptEnded(Event):
    attempt: int
    exit_code: int | None
    reason: str
    failure_class: str
    node: str | None = None  # where it ran, when the backend said


class RestartScheduled(Event):
    next_attempt: int
    delay_seconds: float
    budget: str  # which budget the restart spends: user, infra or none
    reason: str
    resume_from: str | None = None
    avoid_nodes: list[str] = []  # nodes (or local GPUs) the next attempt keeps away from
    note: str = ""  # e.g. why no node is avoided any more
    spent: int = 0  # restarts of this budget so far, this one included
    limit: int | None = None  # the budget's size (--max-restarts / --max-preemptions); None: uncounted


class NodeUnhealthy(Event):
    """Attempts of several experiments failed on one node with hardware or network faults."""

    node: str
    experiments: int
    faults: int
    window_hours: int
    last_reason: str


class ExperimentSucceeded(Event):
    attempts: int


class ExperimentFailed(Event):
    reason: str
    exit_code: int | None = None
    attempts: int = 0


class StopRequested(Event):
    """Somebody asked for a stop; expbot ends the attempt (SIGTERM, then SIGKILL after the grace)."""

    by: str
    reason: str
    attempt: int
    grace_seconds: float = 0.0


class ExperimentStopped(Event):
    by: str
    reason: str


class ApprovalRequested(Event):
    owner: str
    launch_id: str
    currency: str = "USD"
    projected_cost: float
    budgets: list[dict]  # scope, name, limit, spent, committed of each budget it would overrun
    expires_at: datetime


class LaunchApproved(Event):
    by: str


class LaunchDenied(Event):
    by: str
    reason: str


class IdleWarning(Event):
    """Every GPU of the experiment has been idle for a while: the owner may Keep or Stop it."""

    owner: str
    idle_minutes: int
    grace_minutes: int
    auto_stop: bool = True


class IdleKept(Event):
    """Somebody answered an idle warning with Keep: no warning before `until`."""

    by: str
    until: datetime
    hours: float = 0.0
