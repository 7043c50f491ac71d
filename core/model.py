"""The experiment aggregate: its state machine and its attempts."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from core import events
from core.attempt import Attempt, AttemptState, FailureClass  # noqa: F401  (re-exported: core.model is their home for callers)
from core.errors import IllegalTransition
from core.spec import ExperimentSpec


class State(StrEnum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    RESTARTING = "RESTARTING"
    STOPPING = "STOPPING"  # a stop was asked for: its attempt is being ended (SIGTERM, grace, SIGKILL)
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    REJECTED = "REJECTED"


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.STOPPED, State.REJECTED})
ACTIVE = frozenset(State) - TERMINAL

ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING_APPROVAL: frozenset({State.QUEUED, State.REJECTED, State.STOPPED}),
    State.QUEUED: frozenset({State.STARTING, State.STOPPING, State.STOPPED, State.FAILED}),
    # STARTING -> QUEUED: the cluster accepted the attempt but cannot place it yet.
    State.STARTING: frozenset(
        {State.RUNNING, State.QUEUED, State.RESTARTING, State.SUCCEEDED, State.FAILED, State.STOPPING,
         State.STOPPED}
    ),
    State.RUNNING: frozenset({State.RESTARTING, State.SUCCEEDED, State.FAILED, State.STOPPING, State.STOPPED}),
    State.RESTARTING: frozenset({State.QUEUED, State.STARTING, State.FAILED, State.STOPPED}),
    # Only the supervisor ends a stop, once the attempt's processes are gone.
    State.STOPPING: frozenset({State.STOPPED}),
}


@dataclass
class Experiment:
    """An experiment and everything needed to supervise it."""

    id: str
    spec: ExperimentSpec
    owner: str
    created_at: datetime
    state: State = State.QUEUED
    state_reason: str = ""
    updated_at: datetime | None = None
    idempotency_key: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    user_restarts: int = 0  # spent of spec.max_restarts
    infra_restarts: int = 0  # spent of spec.max_preemptions
    free_restarts: int = 0  # restarts on retry_on_exit_codes, not counted
    stopped_by: str | None = None
    stop_requested_at: datetime | None = None  # when a stop was asked for: its grace counts from here
    launch_id: str = ""  # shared by every experiment of one launch request (a sweep group)
    channel: str | None = None  # where its updates go (e.g. the Slack channel it was launched from)
    version: int = 0
    events: list[events.Event] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.launch_id = self.launch_id or self.id

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def restarts(self) -> int:
        return self.user_restarts + self.infra_restarts + self.free_restarts

    def runtime(self, now: datetime) -> timedelta:
        """Total running time over all attempts: what max_runtime limits."""
        return sum((a.running_time(now) for a in self.attempts), timedelta(0))

    def cost(self, now: datetime) -> float:
        """What every attempt together has cost so far."""
        return sum(a.cost(now) for a in self.attempts)

    def remaining_runtime(self, now: datetime) -> timedelta:
        """How much of max_runtime is left."""
        return max(timedelta(0), self.spec.max_runtime - self.runtime(now))

    # --- transitions -------------------------------------------------------------------------
    def _move(self, to: State, now: datetime, reason: str = "") -> None:
        if to not in ALLOWED.get(self.state, frozenset()):
            raise IllegalTransition(f"{self.name}: cannot go from {self.state} to {to}")
        self.state, self.state_reason, self.updated_at = to, reason, now

    def _emit(self, event_type: type[events.Event], now: datetime, **fields: object) -> None:
        self.events.append(
            event_type(experiment_id=self.id, experiment_name=self.name, occurred_at=now, **fields)
        )

    def launched(self, now: datetime) -> None:
        """Record that the experiment was accepted (emits ExperimentLaunched)."""
        self._emit(
            events.ExperimentLaunched, now, owner=self.owner, project=self.spec.project,
            gpus=self.spec.gpus, gpu_type=self.spec.gpu_type, group=self.spec.group, nodes=self.spec.nodes,
        )

    def await_approval(self, now: datetime, request: events.ApprovalRequested | None = None) -> None:
        """Hold a new experiment until an approver decides (a sweep's first member carries the request)."""
        if self.attempts or self.state not in (State.QUEUED, State.PENDING_APPROVAL):
            raise IllegalTransition(f"{self.name}: only a new launch can wait for approval")
        self.state, self.state_reason, self.updated_at = State.PENDING_APPROVAL, "waiting for a budget approver", now
        if request is not None:
            self.events.append(request)

    def approve(self, by: str, now: datetime) -> None:
        """An approver let it run: it joins the queue."""
        self._move(State.QUEUED, now, f"approved by {by}")
        self._emit(events.LaunchApproved, now, by=by)

    def deny(self, by: str, reason: str, now: datetime) -> None:
        """An approver (or the expiry of the request) refused it; terminal."""
        self._move(State.REJECTED, now, reason)
        self._emit(events.LaunchDenied, now, by=by, reason=reason)

    def queue(self, reason: str, now: datetime) -> None:
        """Wait for capacity; emits an event only when the reason changes."""
        if self.state == State.QUEUED and self.state_reason == reason:
            return
        if self.state != State.QUEUED:
            self._move(State.QUEUED, now, reason)
        self.state_reason, self.updated_at = reason, now
        self._emit(events.ExperimentQueued, now, reason=reason)

    def start_attempt(self, resumed_from: str | None, now: datetime, hourly_rate: float = 0.0) -> Attempt:
        """Record that attempt n+1 was handed to the cluster (priced at `hourly_rate`)."""
        self._move(State.STARTING, now)
        attempt = Attempt(
            number=len(self.attempts) + 1, created_at=now, resumed_from=resumed_from,
            gpus=self.spec.total_gpus, hourly_rate=hourly_rate,  # every node's: what cost reports count
        )
        self.attempts.append(attempt)
        self.next_attempt_at = None
        self._emit(events.AttemptStarted, now, attempt=attempt.number, resumed_from=resumed_from)
        return attempt

    def mark_running(self, now: datetime, node: str | None = None) -> None:
        """The current attempt's process is running (on `node`, when the backend says)."""
        attempt = self._require_attempt(AttemptState.STARTING)
        attempt.node = node or attempt.node
        if self.state == State.QUEUED:  # placed after waiting for capacity
            self._move(State.STARTING, now)
        self._move(State.RUNNING, now)
        attempt.state, attempt.started_at = AttemptState.RUNNING, now
        self._emit(events.AttemptRunning, now, attempt=attempt.number)

    def end_attempt(
        self, exit_code: int | None, reason: str, failure_class: FailureClass, now: datetime,
        node: str | None = None,
    ) -> Attempt:
        """Record how the current attempt ended (the decision comes separately)."""
        attempt = self.current_attempt
        if attempt is None or attempt.state == AttemptState.ENDED:
            raise IllegalTransition(f"{self.name}: no attempt is in progress")
        attempt.node = attempt.node or node
        if self.state == State.QUEUED:  # the cluster held it back, then it ended unseen: it left the queue
            self._move(State.STARTING, now)
        if attempt.started_at is None:  # ended before it was ever seen running
            attempt.started_at = now
        attempt.state, attempt.ended_at = AttemptState.ENDED, now
        attempt.exit_code, attempt.reason, attempt.failure_class = exit_code, reason, failure_class
        self._emit(
            events.AttemptEnded, now, attempt=attempt.number, exit_code=exit_code, reason=reason,
            failure_class=str(failure_class), node=attempt.node,
        )
        return attempt

    def schedule_restart(
        self, at: datetime, budget: str, reason: str, resume_from: str | None, now: datetime,
        avoid_nodes: tuple[str, ...] = (), note: str = "",
    ) -> None:
        """Plan the next attempt at `at`, spending the named budget (user, infra or none)."""
        self._move(State.RESTARTING, now, reason)
        if budget == "user":
            self.user_restarts += 1
            spent, limit = self.user_restarts, self.spec.max_restarts
        elif budget == "infra":
            self.infra_restarts += 1
            spent, limit = self.infra_restarts, self.spec.max_preemptions
        else:
            self.free_restarts += 1
            spent, limit = self.free_restarts, None
        self.next_attempt_at = at
        self._emit(
            events.RestartScheduled, now, next_attempt=len(self.attempts) + 1,
            delay_seconds=max(0.0, (at - now).total_seconds()), budget=budget, reason=reason,
            resume_from=resume_from, avoid_nodes=list(avoid_nodes), note=note, spent=spent, limit=limit,
        )

    def succeed(self, now: datetime) -> None:
        """The experiment finished successfully."""
        self._move(State.SUCCEEDED, now, "succeeded")
        self.next_attempt_at = None
        self._emit(events.ExperimentSucceeded, now, attempts=len(self.attempts))

    def fail(self, reason: str, now: datetime, exit_code: int | None = None) -> None:
        """The experiment gave up."""
        self._move(State.FAILED, now, reason)
        self.next_attempt_at = None
        self._emit(
            events.ExperimentFailed, now, reason=reason, exit_code=exit_code,
            attempts=len(self.attempts),
        )

    def stop(self, by: str, reason: str, now: datetime) -> None:
        """A person (or the idle policy) stopped it; terminal, never restarted."""
        self._move(State.STOPPED, now, reason)
        self.stopped_by, self.next_attempt_at = by, None
        self._emit(events.ExperimentStopped, now, by=by, reason=reason)

    @property
    def has_live_attempt(self) -> bool:
        """Whether its current attempt may still have processes (not yet recorded as ended)."""
        attempt = self.current_attempt
        return attempt is not None and attempt.state != AttemptState.ENDED

    def request_stop(self, by: str, reason: str, now: datetime, grace_seconds: float = 0.0) -> None:
        """Ask for a stop: STOPPING while an attempt must be ended first, else STOPPED at once."""
        if not self.has_live_attempt:
            self.stop(by, reason, now)
            return
        self._move(State.STOPPING, now, reason)
        self.stopped_by, self.stop_requested_at, self.next_attempt_at = by, now, None
        self._emit(events.StopRequested, now, by=by, reason=reason, grace_seconds=grace_seconds,
                   attempt=self.current_attempt.number)  # type: ignore[union-attr]

    def finish_stop(self, exit_code: int | None, how: str, now: datetime) -> None:
        """The stopping attempt's processes are gone (`how`: e.g. "killed by SIGKILL"): STOPPED."""
        reason = self.state_reason
        if self.has_live_attempt:
            self.end_attempt(exit_code, how or reason, FailureClass.STOPPED, now)
        self.stop(self.stopped_by or "expbot", reason, now)

    def _require_attempt(self, state: AttemptState) -> Attempt:
        attempt = self.current_attempt
        if attempt is None or attempt.state != state:
            raise IllegalTransition(f"{self.name}: no attempt in state {state}")
        return attempt
