"""One experiment's attempt, brought up to date: observe it, judge its end, start the next one.

The Reconciler changes the experiment in memory and returns what else it decided (a Step: an
attempt expbot must kill, a start the backend turned away); the Supervisor owns the transaction and
the side effects that follow its commit, the PassScheduler when each experiment is looked at.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.metrics import XidSource
from core.model import AttemptState, Experiment, State
from core.policy import DEFAULT_CATALOG, Action, AttemptOutcome, Backoff, Cause, classify, decide, nodes_to_avoid
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus, ClusterBackend
from core.signatures import Catalog
from core.spec import ExperimentSpec

log = logging.getLogger(__name__)
_LOG_TAIL_LINES = 200


class HourlyRates(Protocol):
    """What pricing an attempt needs: a Prices table, or a book of prices refreshed from OpenCost."""

    def hourly_rate(self, spec: ExperimentSpec) -> float: ...


@dataclass(frozen=True)
class Observed:
    """What observing an attempt decided beyond the experiment's own state."""

    must_stop: bool = False  # expbot ended it (stall, max runtime) or it lingers: kill it after the commit


@dataclass(frozen=True)
class Step:
    """What reconciling one experiment decided beyond its new state, for the commit and the pass."""

    kill: int | None = None  # an attempt expbot ended (stall, max runtime) or that lingers: kill it once committed
    ended: int | None = None  # the attempt whose end this step recorded
    tried_start: bool = False  # it submitted the next attempt: one of the pass's share of starts
    refused_gpus: int | None = None  # the backend could not place a start this big (the experiment queued)
    deferred: bool = False  # a start was due, but the pass's share of starts was spent


def has_live_attempt(experiment: Experiment) -> bool:
    """Whether the experiment's current attempt has not ended (it may hold GPUs and checkpoints)."""
    attempt = experiment.current_attempt
    return attempt is not None and attempt.state != AttemptState.ENDED


class Reconciler:
    """Turns backend facts about an experiment's attempt into the experiment's next state."""

    def __init__(self, backend: ClusterBackend, *, backoff: Backoff, rng: random.Random, prices: HourlyRates,
                 catalog: Catalog = DEFAULT_CATALOG, max_excluded_nodes: int = 3,
                 xids: XidSource | None = None) -> None:
        self.backend = backend
        self.backoff = backoff
        self.rng = rng
        self.prices = prices
        self.catalog = catalog  # failure signatures: shipped defaults and the [failures] table
        self.max_excluded_nodes = max_excluded_nodes  # restarts avoid at most this many bad nodes
        self.xids = xids  # node evidence for failed attempts (DCGM Xid errors via Prometheus), if configured

    def step(self, experiment: Experiment, now: datetime, end_reason: str | None = None,
             may_start: bool = True) -> Step:
        """Observe the live attempt, then submit the next one when it is due and `may_start`."""
        attempt, kill, ended = experiment.current_attempt, None, None
        if attempt is not None and attempt.state != AttemptState.ENDED:
            if self.observe(experiment, now, end_reason).must_stop:
                kill = attempt.number
            if attempt.state == AttemptState.ENDED:
                ended = attempt.number
        # An attempt expbot is about to kill must be gone before the next one shares its checkpoints.
        if kill is not None or has_live_attempt(experiment) or experiment.state not in (State.QUEUED, State.RESTARTING):
            return Step(kill=kill, ended=ended)
        if experiment.next_attempt_at is not None and experiment.next_attempt_at > now:
            return Step(ended=ended)
        if not may_start:
            return Step(ended=ended, deferred=True)
        started = self.start_next(experiment, now)
        return Step(ended=ended, tried_start=True, refused_gpus=None if started else experiment.spec.total_gpus)

    def needs_work(self, experiment: Experiment, now: datetime, refused_gpus: int | None,
                   asked_to_end: bool = False) -> bool:
        """False when reconciling this experiment now would certainly change nothing (no transaction needed)."""
        if experiment.state == State.PENDING_APPROVAL:
            return False
        if experiment.state == State.STOPPING or asked_to_end:
            return True
        attempt = experiment.current_attempt
        if attempt is None or attempt.state == AttemptState.ENDED:
            if experiment.next_attempt_at is not None and experiment.next_attempt_at > now:
                return False
            # Waiting in line behind a request as large that did not fit: it cannot fit either.
            return refused_gpus is None or experiment.spec.total_gpus < refused_gpus  # all nodes' GPUs
        status = self.backend.status(experiment.id, attempt.number)
        if status is None:
            return True
        if status.phase == AttemptPhase.RUNNING and attempt.state == AttemptState.RUNNING:
            return self.should_end(experiment, status, now) is not None
        if status.phase == AttemptPhase.STARTING:
            return False
        if status.phase == AttemptPhase.QUEUED:
            return not (experiment.state == State.QUEUED and experiment.state_reason == status.reason)
        return True

    def start_next(self, experiment: Experiment, now: datetime) -> bool:
        """Submit attempt n+1; False when the backend cannot place it yet (the experiment queues)."""
        resume = self.backend.latest_checkpoint(experiment.id, experiment.spec.checkpoint_glob)
        launch = AttemptLaunch(
            experiment_id=experiment.id, experiment_name=experiment.name,
            attempt=len(experiment.attempts) + 1, spec=experiment.spec, owner=experiment.owner,
            resume_from=resume, max_runtime=experiment.remaining_runtime(now),
            avoid_nodes=nodes_to_avoid(experiment, self.max_excluded_nodes)[0],
        )
        result = self.backend.submit(launch)
        if result.started:
            experiment.start_attempt(resume, now, hourly_rate=self.prices.hourly_rate(experiment.spec))
        else:
            experiment.queue(result.reason or "waiting for capacity", now)
        return result.started

    def observe(self, experiment: Experiment, now: datetime, end_reason: str | None = None) -> Observed:
        """Fold the backend's status of the current (live) attempt into the experiment.

        `end_reason`: another part of expbot found the attempt stuck; if it still runs it is ended
        as stalled with that reason (and killed after the commit).
        """
        attempt = experiment.current_attempt
        assert attempt is not None
        status = self.backend.status(experiment.id, attempt.number)
        if status is None:
            # Recorded as submitted but unknown to the backend (deleted behind our back).
            status = AttemptStatus(AttemptPhase.LOST, reason="attempt vanished from the cluster", infra=True)
        if status.phase == AttemptPhase.QUEUED:
            if attempt.state == AttemptState.STARTING:
                experiment.queue(status.reason or "waiting for capacity", now)
            return Observed()
        ran = status.phase == AttemptPhase.RUNNING or (status.phase == AttemptPhase.EXITED and status.started_at)
        if ran and attempt.state == AttemptState.STARTING:
            # Also when it was placed, ran and ended between two passes: it ran (and cost) from then.
            experiment.mark_running(min(status.started_at or now, now), node=status.node)
        if status.phase in (AttemptPhase.EXITED, AttemptPhase.LOST):
            self._finish(experiment, self._outcome(experiment, status, now), status.ended_at or now, now)
            return Observed(must_stop=status.needs_cleanup)
        if status.phase == AttemptPhase.RUNNING:
            cause, reason = self.should_end(experiment, status, now), ""
            if cause is None and end_reason:
                cause, reason = Cause.STALL, end_reason
            if cause is not None:
                self._finish(experiment, AttemptOutcome(exit_code=None, cause=cause, reason=reason, node=status.node),
                             now, now)
                return Observed(must_stop=True)
        return Observed()

    @staticmethod
    def should_end(experiment: Experiment, status: AttemptStatus, now: datetime) -> Cause | None:
        """Why expbot must end a running attempt now (max runtime, stalled), or None."""
        if experiment.runtime(now) >= experiment.spec.max_runtime:
            return Cause.MAX_RUNTIME
        stall_timeout = experiment.spec.stall_timeout
        attempt = experiment.current_attempt
        if stall_timeout and attempt is not None and attempt.started_at is not None:
            last = max(status.last_progress_at or attempt.started_at, attempt.started_at)
            if now - last > stall_timeout:
                return Cause.STALL
        return None

    def _outcome(self, experiment: Experiment, status: AttemptStatus, now: datetime) -> AttemptOutcome:
        if status.deadline_exceeded:
            return AttemptOutcome(exit_code=status.exit_code, reason=status.reason, cause=Cause.MAX_RUNTIME)
        tail = status.message
        failed = status.exit_code not in (0, None) and not (status.infra or status.oom_killed)
        if not tail and failed:
            # The evidence failure signatures and give-up patterns look for (a log call on a cluster).
            tail = self.backend.logs(experiment.id, experiment.current_attempt.number, _LOG_TAIL_LINES)  # type: ignore[union-attr]
        if failed and self.xids is not None:
            # Node evidence joins the log tail, where the catalog's DCGM signature finds it.
            tail = "\n".join(line for line in (tail.rstrip("\n"), *self._xid_lines(experiment, now)) if line)
        return AttemptOutcome(
            exit_code=status.exit_code, reason=status.reason, infra=status.infra, disruption=status.disruption,
            lost=status.phase == AttemptPhase.LOST, oom_killed=status.oom_killed, log_tail=tail, node=status.node,
        )

    def _finish(self, experiment: Experiment, outcome: AttemptOutcome, ended_at: datetime, now: datetime) -> None:
        failure_class, reason = classify(experiment, outcome, self.catalog)
        experiment.end_attempt(outcome.exit_code, reason, failure_class, min(ended_at, now), node=outcome.node)
        decision = decide(experiment, outcome, now, self.rng, self.backoff, self.catalog)
        if decision.action == Action.SUCCEED:
            experiment.succeed(now)
        elif decision.action == Action.FAIL:
            experiment.fail(decision.reason, now, exit_code=outcome.exit_code)
        elif decision.action == Action.STOP:
            experiment.stop("expbot", decision.reason, now)
        else:
            resume = self.backend.latest_checkpoint(experiment.id, experiment.spec.checkpoint_glob)
            avoid, note = nodes_to_avoid(experiment, self.max_excluded_nodes)
            experiment.schedule_restart(now + decision.delay, decision.budget or "none", decision.reason, resume, now,
                                        avoid, note)

    def _xid_lines(self, experiment: Experiment, now: datetime) -> list[str]:
        """"DCGM reported Xid N on GPU G during the attempt" per rise; none when metrics cannot say."""
        attempt = experiment.current_attempt
        assert attempt is not None and self.xids is not None
        try:
            found = self.xids.xid_errors(experiment.id, attempt.number, attempt.started_at or attempt.created_at, now)
        except Exception as e:  # evidence is a bonus: without it the failure is classified as before
            log.warning("no DCGM Xid evidence for %s attempt %d: %s", experiment.name, attempt.number, e)
            return []
        return list(dict.fromkeys(error.line() for error in found))
