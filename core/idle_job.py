"""The idle-GPU job (run every minute) and the Keep command: warn owners of idle GPUs, stop if unanswered.

With a HangWatch it also finds stuck attempts (core.idle.assess_hang) and hands each to the
supervisor, which ends it in its own thread: ending attempts stays the supervisor's job.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol


from core.commands import Command, KeepExperiment, StopExperiment
from core.errors import ConcurrentUpdate, ExpbotError, NotAllowed, NotFound
from core.events import Event, IdleKept, IdleWarning
from core.idle import IdleAction, IdleConfig, IdleDecision, IdleState, Sample, assess, assess_hang, kept
from core.log_context import bound
from core.messages import owner_or_admin
from core.metrics import GpuMetrics, MetricsUnavailable
from core.model import AttemptState, Experiment, State
from core.ports import Clock, UnitOfWork

log = logging.getLogger(__name__)

ACTOR = "expbot"  # who idle stops are recorded as
AUDIT_STOP = "idle-stop"
AUDIT_KEEP = "idle-keep"
_RETRIES = 3


# --- ports this module needs -------------------------------------------------------------------
class IdleStates(Protocol):
    def get(self, experiment_id: str) -> IdleState:
        """The experiment's idle state (a fresh IdleState if none was saved)."""
        ...

    def save(self, experiment_id: str, state: IdleState, *, expected: IdleState | None = None) -> bool:
        """Store the state; with `expected`, only if the stored one still equals it."""
        ...


class Bus(Protocol):
    def handle(self, command: Command) -> Any:
        """Run a command's handler (core.bus.MessageBus)."""
        ...

    def publish(self, event: Event) -> None:
        """Pass a committed event to in-process handlers (e.g. wake the outbox relay)."""
        ...


@dataclass(frozen=True)
class HangWatch:
    """What stuck-job detection needs besides the samples: each attempt's progress, and who ends it."""

    progress: Callable[[str, int], datetime | None]  # (experiment id, attempt) -> newest checkpoint/heartbeat
    end_attempt: Callable[[str, int, str], None]  # (experiment id, attempt, reason): e.g. Supervisor.end_attempt_later


@dataclass(frozen=True)
class IdleOutcome:
    """What the job did for one experiment (for logs and tests)."""

    experiment_id: str
    experiment_name: str
    action: IdleAction
    idle_minutes: int = 0
    error: str = ""  # why nothing could be done (metrics down, stop refused...)


# --- the job -----------------------------------------------------------------------------------
def check_idle(
    uow_factory: Callable[[], UnitOfWork],
    idle_states: IdleStates,
    metrics: GpuMetrics,
    clock: Clock,
    config: IdleConfig,
    bus: Bus,
    hangs: HangWatch | None = None,
) -> list[IdleOutcome]:
    """Assess every running experiment with GPUs; warn, stop, reset or hand over as stuck. Never raises for one."""
    with uow_factory() as uow:
        running = uow.experiments.list(states=[State.RUNNING])
    outcomes = []
    for experiment in running:
        attempt = experiment.current_attempt
        if experiment.spec.gpus <= 0 or attempt is None or attempt.state != AttemptState.RUNNING:
            continue
        if attempt.started_at is None:
            continue
        try:
            with bound(experiment=experiment.name, experiment_id=experiment.id, attempt=attempt.number):
                outcome = _check_one(experiment, attempt.number, attempt.started_at, uow_factory, idle_states,
                                     metrics, clock, config, bus, hangs)  # every line meanwhile names it
        except Exception as e:  # one broken experiment must not keep the others from being checked
            log.exception("idle check of %s failed", experiment.name,
                          extra={"experiment": experiment.name, "experiment_id": experiment.id})
            outcome = IdleOutcome(experiment.id, experiment.name, IdleAction.NONE, error=str(e))
        outcomes.append(outcome)
    return outcomes


def _check_one(
    experiment: Experiment, attempt: int, started_at: datetime, uow_factory: Callable[[], UnitOfWork],
    idle_states: IdleStates, metrics: GpuMetrics, clock: Clock, config: IdleConfig, bus: Bus,
    hangs: HangWatch | None,
) -> IdleOutcome:
    now = clock.now()
    state = idle_states.get(experiment.id)
    samples: dict[str, list[Sample]] = {}
    watch = hangs if config.hang_timeout else None
    # Nothing to ask while it warms up, unless it may hang meanwhile (busy first, so never while loading).
    if now >= started_at + config.warm_up or watch is not None:
        try:
            since = config.fetch_since(started_at, state.idle_since, now, hangs=watch is not None)
            samples = metrics.samples(experiment.id, attempt, since, now)
        except MetricsUnavailable as e:
            log.warning("idle check of %s skipped: %s", experiment.name, e)
            return IdleOutcome(experiment.id, experiment.name, IdleAction.NONE, error=str(e))
    if watch is not None and (stuck := _hand_over_if_stuck(experiment, attempt, samples, now, config, watch)):
        return stuck
    decision = assess(started_at, samples, state, now, config, expected_gpus=experiment.spec.total_gpus)
    outcome = IdleOutcome(experiment.id, experiment.name, decision.action, decision.idle_minutes)
    if decision.state != state and not idle_states.save(experiment.id, decision.state, expected=state):
        # A Keep landed while we looked: this decision is stale; the next run decides afresh.
        return IdleOutcome(experiment.id, experiment.name, IdleAction.NONE, decision.idle_minutes,
                           error="idle state changed meanwhile")
    if decision.action == IdleAction.WARN:
        try:
            _emit(uow_factory, bus, experiment.id, lambda exp: IdleWarning(
                experiment_id=exp.id, experiment_name=exp.name, occurred_at=now, owner=exp.owner,
                idle_minutes=decision.idle_minutes, grace_minutes=int(config.grace.total_seconds() // 60),
                auto_stop=config.auto_stop,
            ))
        except Exception:
            # Never stop an experiment whose owner was not told: forget the warning, retry next run.
            idle_states.save(experiment.id, _unwarned(decision), expected=decision.state)
            raise
        log.info("%s: GPUs idle for %d min; warned %s", experiment.name, decision.idle_minutes, experiment.owner)
    elif decision.action == IdleAction.STOP:
        return _stop(experiment, decision, uow_factory, clock, bus)
    return outcome


def _hand_over_if_stuck(
    experiment: Experiment, attempt: int, samples: dict[str, list[Sample]], now: datetime, config: IdleConfig,
    watch: HangWatch,
) -> IdleOutcome | None:
    """Tell the supervisor to end a stuck attempt (it is told again each run until it has)."""
    if not samples:
        return None
    try:
        last_progress = watch.progress(experiment.id, attempt)
    except Exception as e:  # without the progress nothing is known to be stuck: never restart on a guess
        log.warning("hang check of %s skipped: its progress is unknown (%s)", experiment.name, e)
        return None
    hang = assess_hang(samples, last_progress, now, config, expected_gpus=experiment.spec.total_gpus)
    if hang is None:
        return None
    reason = hang.reason()
    watch.end_attempt(experiment.id, attempt, reason)
    log.info("%s attempt %d is %s; the supervisor restarts it", experiment.name, attempt, reason)
    return IdleOutcome(experiment.id, experiment.name, IdleAction.STUCK, int(hang.idle_for.total_seconds() // 60))


def _unwarned(decision: IdleDecision) -> IdleState:
    return replace(decision.state, warned_at=None)


def _stop(
    experiment: Experiment, decision: IdleDecision, uow_factory: Callable[[], UnitOfWork], clock: Clock, bus: Bus
) -> IdleOutcome:
    reason = f"GPUs idle for {decision.idle_minutes}m; no answer to the warning"
    try:
        stopped = bus.handle(StopExperiment(name=experiment.id, by=ACTOR, as_admin=True, reason=reason))
        if stopped.stopped_by != ACTOR:
            raise ExpbotError(f"{experiment.name} is being stopped by {stopped.stopped_by} already")
    except ExpbotError as e:  # it ended or was stopped meanwhile
        log.info("idle stop of %s not done: %s", experiment.name, e)
        return IdleOutcome(experiment.id, experiment.name, IdleAction.NONE, decision.idle_minutes, error=str(e))
    with uow_factory() as uow:
        uow.audit.record(
            at=clock.now(), actor=ACTOR, action=AUDIT_STOP, experiment_id=experiment.id,
            detail={"name": experiment.name, "owner": experiment.owner, "reason": reason,
                    "idle_minutes": decision.idle_minutes, "gpus": experiment.spec.total_gpus,
                    "warned_at": _iso(decision.state.warned_at), "idle_since": _iso(decision.state.idle_since)},
        )
        uow.commit()
    log.info("%s stopping: %s", experiment.name, reason)
    return IdleOutcome(experiment.id, experiment.name, IdleAction.STOP, decision.idle_minutes)


def _emit(
    uow_factory: Callable[[], UnitOfWork], bus: Bus, experiment_id: str, make: Callable[[Experiment], Event]
) -> None:
    """Store an event in the outbox by attaching it to its experiment (a changed experiment is saved)."""
    for attempt in range(_RETRIES + 1):
        uow = uow_factory()
        with uow:
            exp = uow.experiments.get(experiment_id)
            if exp is None or exp.is_terminal:
                return
            exp.events.append(make(exp))
            try:
                uow.commit()
            except ConcurrentUpdate:
                if attempt == _RETRIES:
                    raise  # the supervisor keeps winning; the job tries again next run
                continue
        for event in list(uow.collect_new_events()):
            bus.publish(event)  # e.g. wakes the outbox relay so the warning goes out now
        return


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- Keep --------------------------------------------------------------------------------------
def handle_keep(cmd: KeepExperiment, uow: UnitOfWork, *, idle_states: IdleStates, clock: Clock) -> IdleKept:
    """Snooze idle warnings of an experiment for `cmd.hours` (owner or admin only); audited."""
    with uow:
        experiment = uow.experiments.get_by_name(cmd.name)
        if experiment is None:
            raise NotFound(f"no experiment named {cmd.name!r}")
        if not cmd.as_admin and cmd.by != experiment.owner:
            raise NotAllowed(owner_or_admin(experiment.owner, f"keep {experiment.name} running"))
        if experiment.is_terminal:
            raise ExpbotError(f"{experiment.name} has already ended ({experiment.state})")
        now = clock.now()
        until = now + timedelta(hours=cmd.hours)
        # Saved before the event commits: if the commit fails the snooze still protects the run.
        for _ in range(_RETRIES + 1):
            current = idle_states.get(experiment.id)
            if idle_states.save(experiment.id, kept(current, until), expected=current):
                break
        else:
            raise ConcurrentUpdate(f"the idle state of {experiment.name} kept changing; try again")
        event = IdleKept(experiment_id=experiment.id, experiment_name=experiment.name, occurred_at=now,
                         by=cmd.by, until=until, hours=cmd.hours)
        experiment.events.append(event)
        uow.audit.record(
            at=now, actor=cmd.by, action=AUDIT_KEEP, experiment_id=experiment.id,
            detail={"name": experiment.name, "hours": cmd.hours, "until": until.isoformat(), "as_admin": cmd.as_admin},
        )
        uow.commit()
    return event
