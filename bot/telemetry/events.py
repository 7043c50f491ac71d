"""Latency histograms observed from the events the outbox delivers (on the leader, which runs the relay).

Times come from the events themselves, so a delivery delayed by a slow Slack does not skew them.
Each event is counted once (a delivery retried after a failure is recognised by its id).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from prometheus_client import Histogram

from core.events import (AttemptEnded, AttemptRunning, AttemptStarted, Event, ExperimentFailed,
                         ExperimentLaunched, ExperimentStopped, ExperimentSucceeded, LaunchDenied)

SUPERVISION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LAUNCH_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
_SEEN = 10_000  # event ids remembered against double counting (a few relay batches' worth)
_ENDED = (ExperimentSucceeded, ExperimentFailed, ExperimentStopped, LaunchDenied)


class EventLatencies:
    """expbot_supervision_latency_seconds and expbot_launch_to_running_seconds, fed event by event."""

    def __init__(self, registry: Any) -> None:
        self.supervision = Histogram(
            "expbot_supervision_latency_seconds",
            "From a failed attempt's end being recorded to the next attempt's submission (backoff included)",
            buckets=SUPERVISION_BUCKETS, registry=registry)
        self.launch = Histogram(
            "expbot_launch_to_running_seconds",
            "From a launch to its first attempt running (approval and queueing included)",
            buckets=LAUNCH_BUCKETS, registry=registry)
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._launched: dict[str, datetime] = {}  # experiment -> launched at, until its first attempt runs
        self._failed: dict[str, tuple[int, datetime]] = {}  # experiment -> (attempt, ended at), until the next starts

    def observe(self, event: Event) -> None:
        """Take one delivered event into account (at most once per event id)."""
        with self._lock:
            if event.event_id in self._seen:
                return
            self._seen[event.event_id] = None
            if len(self._seen) > _SEEN:
                self._seen.popitem(last=False)
            self._take(event)

    def _take(self, event: Event) -> None:
        eid, at = event.experiment_id, event.occurred_at
        if isinstance(event, ExperimentLaunched):
            self._launched[eid] = at
        elif isinstance(event, AttemptRunning) and eid in self._launched:
            self.launch.observe(max((at - self._launched.pop(eid)).total_seconds(), 0.0))
        elif isinstance(event, AttemptEnded) and event.failure_class != "none":
            self._failed[eid] = (event.attempt, at)
        elif isinstance(event, AttemptStarted) and eid in self._failed:
            attempt, ended = self._failed.pop(eid)
            if event.attempt == attempt + 1:
                self.supervision.observe(max((at - ended).total_seconds(), 0.0))
        elif isinstance(event, _ENDED):
            self._launched.pop(eid, None)
            self._failed.pop(eid, None)


class ObservingNotifier:
    """A notifier that, once an event is delivered, lets the latencies see it."""

    def __init__(self, inner: Any, latencies: EventLatencies) -> None:
        self._inner, self._latencies = inner, latencies

    def notify(self, event: Event) -> None:
        """Deliver through the wrapped notifier, then observe (a failed delivery is observed on its retry)."""
        self._inner.notify(event)
        self._latencies.observe(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # the wrapped notifier's other methods (threads, DMs, ...)
