"""What one serve process counts in memory: Slack Web API calls, acks, leadership, watch relists.

Everything about experiments, attempts, spend and the outbox is read from the store at scrape time
instead (bot.telemetry.store), so that those figures are the same on every replica.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from bot.telemetry.events import EventLatencies

# Slack wants an ack within 3 s: buckets resolve the range around that limit.
ACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0)


class Telemetry:
    """One registry per serve (tests run several in one process), with the in-memory metrics on it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.slack_calls = Counter("expbot_slack_api_calls_total", "Slack Web API calls by method and outcome",
                                   ["method", "outcome"], registry=r)
        self.slack_rate_limited = Counter("expbot_slack_rate_limited_total",
                                          "Slack Web API responses that were 429 Too Many Requests (each retry counts)",
                                          ["method"], registry=r)
        self.ack_seconds = Histogram("expbot_slack_ack_seconds", "Time to answer a Slack HTTP request (the ack)",
                                     buckets=ACK_BUCKETS, registry=r)
        self.leader = Gauge("expbot_leader", "1 while this replica leads (supervises and schedules), else 0",
                            registry=r)
        self.leadership_changes = Counter("expbot_leadership_changes_total",
                                          "Times this replica started or stopped leading", registry=r)
        self._lock = threading.Lock()
        self._leading_since: float | None = None  # time.monotonic() when leading began
        self._relists: Callable[[], dict[str, int]] = dict
        r.register(_Relists(lambda: self._relists()))
        self.latencies = EventLatencies(r)  # fed by the notifier the outbox relay delivers through

    def slack_call(self, method: str, outcome: str) -> None:
        """Count one Slack Web API call ('rate_limited' counts a 429 response on its own counter)."""
        if outcome == "rate_limited":
            self.slack_rate_limited.labels(method).inc()
        else:
            self.slack_calls.labels(method, outcome).inc()

    def leading(self, now_leading: bool) -> None:
        """Record that this replica started (True) or stopped (False) leading."""
        with self._lock:
            if (self._leading_since is not None) == now_leading:
                return
            self._leading_since = time.monotonic() if now_leading else None
        self.leader.set(1 if now_leading else 0)
        self.leadership_changes.inc()

    def leading_for(self) -> float | None:
        """Seconds since this replica began leading, None while it does not lead."""
        since = self._leading_since
        return None if since is None else time.monotonic() - since

    def count_relists(self, relists: Callable[[], dict[str, int]]) -> None:
        """Where the backend's watches say how often each relisted (read at every scrape)."""
        self._relists = relists


class _Relists:
    """expbot_watch_relists_total: the Kubernetes watches' own counts, read at scrape time."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def describe(self) -> list[Any]:
        """The family, for the registry's check of duplicate names."""
        return [CounterMetricFamily("expbot_watch_relists", "Kubernetes watch relists (410 Gone or errors)",
                                    labels=["resource"])]

    def collect(self) -> Iterator[Any]:
        """The relist counts as they are now."""
        family = CounterMetricFamily("expbot_watch_relists", "Kubernetes watch relists (410 Gone or errors)",
                                     labels=["resource"])
        for resource, n in sorted(self._read().items()):
            family.add_metric([resource], n)
        yield family
