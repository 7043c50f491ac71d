"""The supervisor: watches every active experiment's attempt and carries out the policy."""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from core.cost import Prices
from core.errors import ConcurrentUpdate, DatabaseUnavailable
from core.failures import FailureLog
from core.metrics import XidSource
from core.model import AttemptState, Experiment, State
from core.node_health import NodeHealthConfig, cordon, report_sick_node
from core.policy import DEFAULT_CATALOG, Backoff
from core.ports import AttemptPhase, Clock, ClusterBackend, UnitOfWork
from core.reconciler import HourlyRates, Reconciler
from core.signatures import Catalog
from core.stopping import Stopper

log = logging.getLogger(__name__)
# A failed pass is retried this soon, as a full pass, however long the resync interval.
_RETRY_FAILED_PASS = timedelta(seconds=2)


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
        self._starts_this_pass = 0
        self._due: dict[str, datetime] = {}  # experiment -> when to look again (restarts, deferred starts)
        self._to_stop: list[tuple[str, int]] = []
        self._stopper = Stopper(backend, stop_grace, stop_in_background)  # stops people asked for
        self._refused_gpus: int | None = None
        self._failures = FailureLog(log, "supervisor pass")
        # Attempts other threads found stuck (the idle job): experiment -> (attempt, reason).
        self._to_end: dict[str, tuple[int, str]] = {}
        self._to_end_lock = threading.Lock()

    def wake(self, experiment_id: str) -> None:
        """Look at this experiment now rather than at the next pass (it was launched or approved)."""
        self.backend.wake(experiment_id)

    def end_attempt_later(self, experiment_id: str, attempt: int, reason: str) -> None:
        """Thread-safe: at its next reconcile, end this attempt as stalled with `reason` if it still runs."""
        with self._to_end_lock:
            self._to_end[experiment_id] = (attempt, reason)
        self.backend.wake(experiment_id)

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
        """Reconcile until `stop` is set: on every backend change, when a restart is due, and periodically.

        A backend that names the experiments that changed (a watch) gets passes over just those
        and over the restarts that fall due; every `resync_interval` seconds all are looked at.
        """
        next_full: datetime | None = None
        changed: set[str] | None = None
        while not stop.is_set():
            now = self.clock.now()
            try:
                if changed is None or next_full is None or now >= next_full:
                    next_full = now + timedelta(seconds=resync_interval)  # first: a failing pass must not spin
                    self.reconcile_once()
                elif ids := changed | self._take_due(now):
                    self.reconcile_ids(ids)
            except Exception as e:  # the loop must outlive any one bad pass (e.g. a sick database)
                self._failures.failed(e)
                # A failure may have cut the pass short: the whole pass is retried soon.
                next_full = min(next_full or now, now + min(timedelta(seconds=resync_interval), _RETRY_FAILED_PASS))
            else:
                self._failures.succeeded()
            wake = min([next_full, *self._due.values()])
            # At least 0.1s: a restart that is due but cannot fit yet must not make the loop spin.
            timeout = max(0.1, (wake - self.clock.now()).total_seconds())
            changed = self.backend.wait_for_change(min(timeout, resync_interval))

    def reconcile_ids(self, experiment_ids: set[str]) -> datetime | None:
        """Reconcile just these experiments (the ones the backend saw change); the soonest restart due."""
        self._starts_this_pass = 0
        next_due: datetime | None = None
        for experiment_id in sorted(experiment_ids):
            self._due.pop(experiment_id, None)
            try:
                due = self._reconcile_with_retry(experiment_id)
            except DatabaseUnavailable:
                raise  # the pass fails as a whole: one line in the log, and it is retried soon
            except Exception:
                log.exception("supervising experiment %s failed", experiment_id)
                continue
            next_due = self._note_due(experiment_id, due, next_due)
        return next_due

    def reconcile_once(self) -> datetime | None:
        """One pass over every active experiment; returns when the next restart is due, if any."""
        with self.uow_factory() as uow:
            snapshot = uow.experiments.active()  # one query, attempts included
        now = self.clock.now()
        self._starts_this_pass = 0
        self._due = {}
        next_due: datetime | None = None
        refused_gpus: int | None = None  # the smallest request the backend turned away this pass
        for experiment in snapshot:
            try:
                # Most experiments need nothing most of the time: look before opening a transaction.
                if not self._needs_work(experiment, now, refused_gpus):
                    due = experiment.next_attempt_at if experiment.state == State.RESTARTING else None
                elif not self._may_start() and not self._has_live_attempt(experiment):
                    due = now  # this pass has started its share: in a moment, without a whole pass
                else:
                    self._refused_gpus = None
                    due = self._reconcile_with_retry(experiment.id)
                    if self._refused_gpus is not None:
                        refused_gpus = min(self._refused_gpus, refused_gpus if refused_gpus is not None else self._refused_gpus)
            except DatabaseUnavailable:
                raise  # as in reconcile_ids
            except Exception:
                log.exception("supervising experiment %s failed", experiment.id)
                continue
            next_due = self._note_due(experiment.id, due, next_due)
        return next_due

    def _note_due(self, experiment_id: str, due: datetime | None, soonest: datetime | None) -> datetime | None:
        """Remember when to look at the experiment again; the sooner of `due` and `soonest`."""
        if due is None:
            return soonest
        self._due[experiment_id] = due
        return due if soonest is None or due < soonest else soonest

    def _take_due(self, now: datetime) -> set[str]:
        """The experiments due by now, the earliest first, at most a pass's share of starts."""
        ready = sorted((due, n, eid) for n, (eid, due) in enumerate(self._due.items()) if due <= now)
        taken = {eid for _due, _n, eid in ready[: self.max_starts_per_pass]}
        for eid in taken:
            del self._due[eid]
        return taken

    def _needs_work(self, experiment: Experiment, now: datetime, refused_gpus: int | None) -> bool:
        """False when reconciling this experiment now would certainly change nothing."""
        if experiment.state == State.PENDING_APPROVAL:
            return False
        if experiment.state == State.STOPPING or experiment.id in self._to_end:
            return True
        attempt = experiment.current_attempt
        if attempt is None or attempt.state == AttemptState.ENDED:
            if experiment.next_attempt_at is not None and experiment.next_attempt_at > now:
                return False
            # Waiting in line behind a request as large that did not fit: it cannot fit either.
            return refused_gpus is None or experiment.spec.gpus < refused_gpus
        status = self.backend.status(experiment.id, attempt.number)
        if status is None:
            return True
        if status.phase == AttemptPhase.RUNNING and attempt.state == AttemptState.RUNNING:
            return self.reconciler.should_end(experiment, status, now) is not None
        if status.phase == AttemptPhase.STARTING:
            return False
        if status.phase == AttemptPhase.QUEUED:
            return not (experiment.state == State.QUEUED and experiment.state_reason == status.reason)
        return True

    def _reconcile_with_retry(self, experiment_id: str) -> datetime | None:
        for _ in range(3):
            try:
                return self.reconcile(experiment_id)
            except ConcurrentUpdate:
                continue  # somebody (a stop from Slack or the CLI) changed it: look again
        return None

    def reconcile(self, experiment_id: str) -> datetime | None:
        """Bring one experiment up to date; returns its pending restart time, if any."""
        self._to_stop = []
        uow = self.uow_factory()
        with uow:
            experiment = uow.experiments.get(experiment_id)
            end_reason = self._end_reason(experiment) if experiment is not None else None
            if experiment is None or experiment.is_terminal or experiment.state == State.PENDING_APPROVAL:
                return None
            now = self.clock.now()
            if experiment.state == State.STOPPING:
                self._stopper.carry_out(experiment, now)
                uow.commit()
                if experiment.is_terminal:
                    self._release(experiment.id)
                return None
            attempt, sick_node = experiment.current_attempt, None
            if attempt is not None and attempt.state != AttemptState.ENDED:
                if self.reconciler.observe(experiment, now, end_reason).must_stop:
                    self._to_stop.append((experiment.id, attempt.number))
                if attempt.state == AttemptState.ENDED:
                    sick_node = report_sick_node(uow, experiment, self.node_health, now)
            # An attempt expbot is about to kill must be gone before the next one shares its checkpoints.
            can_start = not self._to_stop and not self._has_live_attempt(experiment)
            deferred = False
            if can_start and experiment.state in (State.QUEUED, State.RESTARTING):
                if experiment.next_attempt_at is None or experiment.next_attempt_at <= now:
                    if self._may_start():
                        self._starts_this_pass += 1
                        if not self.reconciler.start_next(experiment, now):
                            self._refused_gpus = experiment.spec.gpus
                    else:
                        deferred = True
            uow.commit()
        if attempt is not None and attempt.state == AttemptState.ENDED:
            self._ended(experiment.id, attempt.number)
        if sick_node is not None and self.cordon_node is not None:
            cordon(self.uow_factory, self.cordon_node, sick_node, experiment.id, now)
        self._stop_pending()
        if experiment.is_terminal:
            self._release(experiment.id)
        if deferred:
            return now
        return experiment.next_attempt_at if experiment.state == State.RESTARTING else None

    # --- steps -------------------------------------------------------------------------------
    @staticmethod
    def _has_live_attempt(experiment: Experiment) -> bool:
        attempt = experiment.current_attempt
        return attempt is not None and attempt.state != AttemptState.ENDED

    def _may_start(self) -> bool:
        return self._starts_this_pass < self.max_starts_per_pass

    def _release(self, experiment_id: str) -> None:
        try:
            self.backend.release(experiment_id)
        except Exception:  # its checkpoints outlive it; nothing else depends on this
            log.exception("releasing %s's resources failed", experiment_id)

    def _stop_pending(self) -> None:
        # Ended by expbot (stall, max runtime): the decision is committed first, so the dying
        # process's exit can never be mistaken for a fresh failure.
        while self._to_stop:
            experiment_id, number = self._to_stop.pop(0)
            try:
                self.backend.stop(experiment_id, number, self.stop_grace)
            except Exception:
                log.exception("stopping %s attempt %s failed", experiment_id, number)
