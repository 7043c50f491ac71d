"""The supervisor: passes over the active experiments, each one reconciled in its own transaction.

Three parts, each with one job: the PassScheduler (core/passes.py) decides when a pass runs and over
what; the Supervisor runs a pass, reconciling each experiment in a transaction and carrying out after
the commit what the Reconciler (core/reconciler.py) returned; the Reconciler decides.
"""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.cost import Prices
from core.errors import ConcurrentUpdate, DatabaseUnavailable
from core.log_context import bound
from core.metrics import XidSource
from core.model import AttemptState, Experiment, State
from core.node_health import NodeHealthConfig, cordon, report_sick_node
from core.policy import DEFAULT_CATALOG, Backoff
from core.passes import PassScheduler
from core.ports import Clock, ClusterBackend, UnitOfWork
from core.reconciler import HourlyRates, Reconciler, Step, has_live_attempt
from core.signatures import Catalog
from core.stopping import Stopper

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciled:
    """What reconciling one experiment came to, for the pass that asked."""

    due: datetime | None = None  # look again then: a restart, or a start deferred to the next slice
    tried_start: bool = False  # one of the pass's share of starts went to it
    refused_gpus: int | None = None  # the backend could not place a start this big


@dataclass
class _Pass:
    """One pass in progress: what it looked at, its starts so far (against its share), the soonest due."""

    handled: set[str] = field(default_factory=set)
    starts: int = 0
    next_due: datetime | None = None


class Supervisor:
    """Reconciles stored experiments with what the backend reports; one pass at a time."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        backend: ClusterBackend,
        clock: Clock,
        *,
        backoff: Backoff = Backoff(),
        stop_grace: timedelta = timedelta(seconds=30),
        rng: random.Random | None = None,
        prices: HourlyRates | None = None,
        max_starts_per_pass: int = 50,
        stop_in_background: bool = True,
        catalog: Catalog = DEFAULT_CATALOG,
        max_excluded_nodes: int = 3,
        node_health: NodeHealthConfig = NodeHealthConfig(),
        cordon_node: Callable[[str], None] | None = None,
        xids: XidSource | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.backend = backend
        self.clock = clock
        self.stop_grace = stop_grace
        self.prices = prices or Prices()
        self.reconciler = Reconciler(backend, backoff=backoff, rng=rng or random.Random(), prices=self.prices,
                                     catalog=catalog, max_excluded_nodes=max_excluded_nodes, xids=xids)
        self.node_health = node_health  # when a node that failed several experiments is reported
        self.cordon_node = cordon_node  # opt-in: cordon a node once it is reported sick
        # A burst of launches is submitted a slice per pass, so that failures seen meanwhile are
        # still acted on within seconds rather than after the whole backlog (each submit is an API call).
        self.max_starts_per_pass = max_starts_per_pass
        self.scheduler = PassScheduler(backend.wait_for_change, clock)
        # Stops people asked for; a stop carried out wakes the scheduler to record STOPPED at once.
        self._stopper = Stopper(backend, stop_grace, stop_in_background, woken=self.scheduler.wake)
        # Attempts other threads found stuck (the idle job): experiment -> (attempt, reason).
        self._to_end: dict[str, tuple[int, str]] = {}
        self._to_end_lock = threading.Lock()

    def wake(self, experiment_id: str) -> None:
        """Look at this experiment now rather than at the next pass (it was launched, approved or stopped)."""
        self.scheduler.wake(experiment_id)

    def interrupt(self) -> None:
        """End the run loop's current wait now (serve is stopping: it then sees its stop event)."""
        self.scheduler.wake()

    def end_attempt_later(self, experiment_id: str, attempt: int, reason: str) -> None:
        """Thread-safe: at its next reconcile, end this attempt as stalled with `reason` if it still runs."""
        with self._to_end_lock:
            self._to_end[experiment_id] = (attempt, reason)
        self.scheduler.wake(experiment_id)

    def _end_reason(self, experiment: Experiment) -> str | None:
        """The reason to end the experiment's live attempt, if one was asked for; stale requests go."""
        attempt = experiment.current_attempt
        live = attempt.number if attempt is not None and attempt.state != AttemptState.ENDED else None
        with self._to_end_lock:
            asked = self._to_end.get(experiment.id)
            if asked is None:
                return None
            if live is None or asked[0] != live or experiment.is_terminal or experiment.state == State.STOPPING:
                del self._to_end[experiment.id]  # that attempt ended, or a stop wins
                return None
            return asked[1]

    def _ended(self, experiment_id: str, attempt: int) -> None:
        """Forget a request to end `attempt` once its end is committed."""
        with self._to_end_lock:
            if self._to_end.get(experiment_id, (None,))[0] == attempt:
                del self._to_end[experiment_id]

    def run(self, stop: threading.Event, resync_interval: float = 2.0) -> None:
        """Reconcile until `stop` is set: on every backend change or wake-up, when a restart is due, and periodically.

        A backend that names the experiments that changed (a watch) gets passes over just those
        and over the restarts that fall due; every `resync_interval` seconds all are looked at.
        """
        self.scheduler.run(self, stop, resync_interval)

    def reconcile_ids(self, experiment_ids: set[str]) -> datetime | None:
        """Reconcile just these experiments (the ones the backend saw change); the soonest restart due."""
        visit = _Pass()
        for experiment_id in sorted(experiment_ids):
            self._changed_first(visit)
            if experiment_id not in visit.handled:
                self._visit(visit, experiment_id)
        self._changed_first(visit)
        return visit.next_due

    def reconcile_once(self) -> datetime | None:
        """One pass over every active experiment; returns when the next restart is due, if any."""
        with self.uow_factory() as uow:
            snapshot = uow.experiments.active()  # one query, attempts included
        now = self.clock.now()
        self.scheduler.forget_due()
        visit = _Pass()
        refused_gpus: int | None = None  # the smallest request the backend turned away this pass
        for experiment in snapshot:
            self._changed_first(visit)
            if experiment.id in visit.handled:
                continue  # looked at this pass already, with fresher data than the snapshot
            try:
                # Most experiments need nothing most of the time: look before opening a transaction.
                with bound(experiment=experiment.name, experiment_id=experiment.id):  # in every line logged meanwhile
                    work = self.reconciler.needs_work(experiment, now, refused_gpus, experiment.id in self._to_end)
                if not work:
                    due = experiment.next_attempt_at if experiment.state == State.RESTARTING else None
                    visit.next_due = self._note_due(experiment.id, due, visit.next_due)
                    continue
            except DatabaseUnavailable:
                raise  # as in _visit
            except Exception:
                log.exception("supervising experiment %s failed", experiment.id, extra={"experiment_id": experiment.id})
                continue
            if visit.starts >= self.max_starts_per_pass and not has_live_attempt(experiment):
                # This pass has started its share: in a moment, without a whole pass.
                visit.next_due = self._note_due(experiment.id, now, visit.next_due)
                continue
            done = self._visit(visit, experiment.id)
            if done is not None and done.refused_gpus is not None:
                refused_gpus = min(done.refused_gpus, refused_gpus if refused_gpus is not None else done.refused_gpus)
        self._changed_first(visit)
        return visit.next_due

    def _changed_first(self, visit: _Pass) -> None:
        """Reconcile what changed since the pass began (an attempt ended) before going on: a pass of
        many starts or updates must not keep a failed experiment waiting for its restart."""
        queue: list[str] = []
        while True:
            queue += sorted(self.scheduler.changed_meanwhile() - set(queue))
            if not queue:
                return
            self._visit(visit, queue.pop(0))

    def _visit(self, visit: _Pass, experiment_id: str) -> Reconciled | None:
        """Reconcile one experiment as part of `visit`, counting its start and noting when it is due."""
        visit.handled.add(experiment_id)
        self.scheduler.note_due(experiment_id, None)
        try:
            with bound(experiment_id=experiment_id):  # in every line logged meanwhile (the JSON log's field)
                done = self._reconcile_with_retry(experiment_id, visit.starts < self.max_starts_per_pass)
        except DatabaseUnavailable:
            raise  # the pass fails as a whole: one line in the log, and it is retried soon
        except Exception:
            log.exception("supervising experiment %s failed", experiment_id, extra={"experiment_id": experiment_id})
            return None
        visit.starts += done.tried_start
        visit.next_due = self._note_due(experiment_id, done.due, visit.next_due)
        return done

    def _note_due(self, experiment_id: str, due: datetime | None, soonest: datetime | None) -> datetime | None:
        """Tell the scheduler when to look at the experiment again; the sooner of `due` and `soonest`."""
        if due is None:
            return soonest
        self.scheduler.note_due(experiment_id, due)
        return due if soonest is None or due < soonest else soonest

    def _reconcile_with_retry(self, experiment_id: str, may_start: bool) -> Reconciled:
        for _ in range(3):
            try:
                return self.reconcile(experiment_id, may_start)
            except ConcurrentUpdate:
                continue  # somebody (a stop from Slack or the CLI) changed it: look again
        return Reconciled()

    def reconcile(self, experiment_id: str, may_start: bool = True) -> Reconciled:
        """Bring one experiment up to date in one transaction, then carry out what that decided."""
        with self.uow_factory() as uow:
            experiment = uow.experiments.get(experiment_id)
            end_reason = self._end_reason(experiment) if experiment is not None else None
            if experiment is None or experiment.is_terminal or experiment.state == State.PENDING_APPROVAL:
                return Reconciled()
            now = self.clock.now()
            if experiment.state == State.STOPPING:
                self._stopper.carry_out(experiment, now)
                uow.commit()
                if experiment.is_terminal:
                    self._release(experiment.id)
                return Reconciled()
            before = experiment.current_attempt  # the attempt this step may end (a new one may follow it)
            step = self.reconciler.step(experiment, now, end_reason, may_start)
            sick_node = report_sick_node(uow, experiment, self.node_health, now) if step.ended is not None else None
            uow.commit()
        ended = before.number if before is not None and before.state == AttemptState.ENDED else None
        self._after_commit(experiment, step, ended, sick_node, now)
        if step.deferred:
            return Reconciled(due=now)
        due = experiment.next_attempt_at if experiment.state == State.RESTARTING else None
        return Reconciled(due=due, tried_start=step.tried_start, refused_gpus=step.refused_gpus)

    def _after_commit(self, experiment: Experiment, step: Step, ended: int | None, sick_node: str | None,
                      now: datetime) -> None:
        """The side effects of a committed step: forget an end request, cordon, kill, release."""
        if ended is not None:
            self._ended(experiment.id, ended)
        if sick_node is not None and self.cordon_node is not None:
            cordon(self.uow_factory, self.cordon_node, sick_node, experiment.id, now)
        if step.kill is not None:
            # Ended by expbot (stall, max runtime): the decision is committed first, so the dying
            # process's exit can never be mistaken for a fresh failure.
            try:
                self.backend.stop(experiment.id, step.kill, self.stop_grace)
            except Exception:
                log.exception("stopping %s attempt %s failed", experiment.id, step.kill)
        if experiment.is_terminal:
            self._release(experiment.id)

    def _release(self, experiment_id: str) -> None:
        try:
            self.backend.release(experiment_id)
        except Exception:  # its checkpoints outlive it; nothing else depends on this
            log.exception("releasing %s's resources failed", experiment_id)
