"""An attempt: one run of an experiment's command, and how it ended."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class FailureClass(StrEnum):
    NONE = "none"  # succeeded
    INFRA = "infra"  # preempted, evicted, node or process lost
    HARDWARE = "hardware"  # a failure signature of a sick GPU (Xid, ECC): infrastructure
    NETWORK = "network"  # a failure signature of the interconnect (NCCL, InfiniBand): infrastructure
    USER = "user"  # the code failed
    RETRYABLE_EXIT = "retryable-exit"  # exit code listed in retry_on_exit_codes
    GIVE_UP = "give-up-pattern"  # the log matched a give-up pattern
    STALL = "stall"  # no progress for stall_timeout: killed by expbot
    MAX_RUNTIME = "max-runtime"
    STOPPED = "stopped"  # stopped by a person
    IDLE = "idle"  # stopped because its GPUs sat idle


class AttemptState(StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    ENDED = "ENDED"


@dataclass
class Attempt:
    """One run of an experiment's command."""

    number: int
    created_at: datetime
    state: AttemptState = AttemptState.STARTING
    started_at: datetime | None = None  # when it began running
    ended_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    failure_class: FailureClass | None = None
    resumed_from: str | None = None
    gpus: int = 0
    hourly_rate: float = 0.0  # cost of one wall hour of this attempt, priced when it started
    node: str | None = None  # where it ran: a Kubernetes node, or the local GPUs ("gpu0,gpu1")

    def cost(self, now: datetime) -> float:
        """What this attempt has cost so far (running attempts accrue up to `now`)."""
        return self.hourly_rate * self.running_time(now).total_seconds() / 3600.0

    def running_time(self, now: datetime) -> timedelta:
        """Wall time this attempt has spent running (so far, if it still runs)."""
        if self.started_at is None:
            return timedelta(0)
        return (self.ended_at or now) - self.started_at
