"""Stops people ask for, carried out by the supervisor: SIGTERM, the grace, SIGKILL, then STOPPED.

The CLI, Slack and the idle job only record the request (STOPPING). Ending the attempt belongs to
the supervisor, so an interrupted CLI or a closed terminal changes nothing about the stop, and a
stop asked for while no supervisor runs is carried out when one starts.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from core.model import Experiment
from core.ports import AttemptPhase, ClusterBackend

log = logging.getLogger(__name__)


class Stopper:
    """Ends STOPPING experiments' attempts, each in a background thread (a grace may be long)."""

    def __init__(self, backend: ClusterBackend, grace: timedelta, background: bool = True,
                 woken: Callable[[str], None] = lambda _experiment_id: None) -> None:
        self.backend = backend
        self.woken = woken  # the supervisor's wake-up: it records STOPPED once the backend's stop returned
        self.grace = grace
        self.background = background  # False: stop within the pass (deterministic unit tests)
        self._lock = threading.Lock()
        self._started: dict[tuple[str, int], bool] = {}  # attempt -> whether its backend stop returned

    def carry_out(self, experiment: Experiment, now: datetime) -> None:
        """Record STOPPED if the attempt is gone; else make sure the backend is ending it."""
        attempt = experiment.current_attempt
        key = (experiment.id, attempt.number if attempt else 0)
        with self._lock:
            if self._started.get(key) is False:
                return  # still ending it (it says how it ended when done); its wake brings us back
        status = None if attempt is None else self.backend.status(experiment.id, attempt.number)
        if status is None or status.phase in (AttemptPhase.EXITED, AttemptPhase.LOST):
            exited = status is not None and status.phase == AttemptPhase.EXITED
            ended_at = (status.ended_at if status is not None else None) or now
            experiment.finish_stop(status.exit_code if status else None, status.reason if exited else "",
                                   min(ended_at, now))
            with self._lock:
                self._started.pop(key, None)
            return
        # The grace counts from the request, so a stop resumed by a new serve still kills on time.
        left = max(timedelta(0), (experiment.stop_requested_at or now) + self.grace - now)
        with self._lock:
            if key in self._started:
                return  # being stopped, or stopped and about to be seen gone
            self._started[key] = False
        if self.background:
            threading.Thread(target=self._stop, args=(key, left), daemon=True, name=f"expbot-stop-{experiment.name}").start()
        else:
            self._stop(key, left)

    def _stop(self, key: tuple[str, int], grace: timedelta) -> None:
        try:
            self.backend.stop(key[0], key[1], grace)
            with self._lock:
                self._started[key] = True
        except Exception:
            log.exception("stopping %s attempt %s failed; trying again on the next pass", *key,
                          extra={"experiment_id": key[0], "attempt": key[1]})
            with self._lock:
                self._started.pop(key, None)
        self.woken(key[0])  # record STOPPED now, not at the next pass
