"""The store's figures as Prometheus metrics, read at every scrape (a custom collector).

Counters computed from the store (spend, GPU-hours, attempts, restarts) are the same on every
replica and survive restarts: dashboards take `max without (instance, pod)` across replicas, never a sum.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from adapters.db import metrics_queries as q
from core.budget import PROJECT, BudgetConfig, month_window
from core.budget_alerts import all_limits
from core.model import State
from core.ports import Clock, UnitOfWork

log = logging.getLogger(__name__)

SUPERVISION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LAUNCH_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


class StoreCollector:
    """Reads experiments, attempts, spend, budgets and the outbox at scrape time."""

    def __init__(self, session_factory: Any, uow_factory: Callable[[], UnitOfWork], clock: Clock,
                 budgets: BudgetConfig, idle_gpu_hours: Callable[[], float]) -> None:
        self._sessions, self._uows, self._clock = session_factory, uow_factory, clock
        self._budgets, self._idle = budgets, idle_gpu_hours

    def describe(self) -> list[Any]:
        return []  # families are made at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        """Every store metric, or just expbot_store_up 0 when the database cannot answer."""
        up = GaugeMetricFamily("expbot_store_up", "1 when the last scrape could read the database, else 0")
        try:
            families = self._read(self._clock.now())
        except Exception as e:  # a sick database: the process metrics still come, and this says why not these
            log.warning("metrics: cannot read the store: %s", " ".join(str(e).split())[:300])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, now: datetime) -> list[Any]:
        with self._sessions() as session:
            families = [*_experiments(session), *_attempts(session), *_outbox(session, now), *_usage(session, now)]
            families.append(_histogram("expbot_supervision_latency_seconds",
                                       "From a failed attempt's end to the next attempt's submission",
                                       q.supervision_latency(session, SUPERVISION_BUCKETS)))
            families.append(_histogram("expbot_launch_to_running_seconds",
                                       "From a launch to its first attempt running",
                                       q.launch_to_running(session, LAUNCH_BUCKETS)))
        families.append(self._budget_ratio(now))
        idle = CounterMetricFamily("expbot_idle_gpu_hours", "GPU-hours experiments spent idle (the idle check's totals)")
        idle.add_metric([], self._idle())
        families.append(idle)
        return families

    def _budget_ratio(self, now: datetime) -> Any:
        family = GaugeMetricFamily("expbot_budget_used_ratio", "This month's spend over the project's monthly budget",
                                   labels=["project"])
        start, end, _ = month_window(now, self._budgets.timezone)
        with self._uows() as uow:
            for limit in all_limits(self._budgets, uow.budgets.overrides()):
                if limit.scope != PROJECT:
                    continue
                spent = uow.costs.spent(start=start, end=end, now=now, project=limit.name)
                family.add_metric([limit.name], spent / limit.monthly if limit.monthly > 0 else float(spent > 0))
        return family


def _experiments(session: Any) -> list[Any]:
    by_state = GaugeMetricFamily("expbot_experiments", "Experiments by state and project", labels=["state", "project"])
    counts = {(state, project): n for state, project, n in q.experiments_by_state(session)}
    # Every state of every project that has experiments, zeros included: a queue that empties reads 0, not "no data".
    for project in sorted({project for _, project in counts}):
        for state in State:
            by_state.add_metric([state.value, project], counts.get((state.value, project), 0))
    pending = sum(n for (state, _), n in counts.items() if state == State.PENDING_APPROVAL)
    approvals = GaugeMetricFamily("expbot_approvals_pending", "Launches waiting for an approver")
    approvals.add_metric([], pending)
    return [by_state, approvals]


def _attempts(session: Any) -> list[Any]:
    started = CounterMetricFamily("expbot_attempts_started", "Attempts submitted to the backend")
    started.add_metric([], q.attempts_started(session))
    ended = CounterMetricFamily("expbot_attempts_ended", "Attempts that ended, by failure class ('none': no failure)",
                                labels=["failure_class"])
    for cls, n in sorted(q.attempts_ended(session).items()):
        ended.add_metric([cls], n)
    restarts = CounterMetricFamily("expbot_restarts", "Restarts by the budget they counted against", labels=["budget"])
    for budget, n in q.restarts_by_budget(session).items():
        restarts.add_metric([budget], n)
    return [started, ended, restarts]


def _outbox(session: Any, now: datetime) -> list[Any]:
    count, oldest = q.outbox_backlog(session)
    backlog = GaugeMetricFamily("expbot_outbox_backlog", "Events stored but not yet delivered (to Slack or the console)")
    backlog.add_metric([], count)
    age = GaugeMetricFamily("expbot_outbox_oldest_age_seconds", "Age of the oldest undelivered event (0: none)")
    age.add_metric([], max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
    return [backlog, age]


def _usage(session: Any, now: datetime) -> list[Any]:
    labels = ["project", "user", "gpu_type"]
    spend = CounterMetricFamily("expbot_spend", "Spend so far (running attempts up to now), as the digest prices it",
                                labels=labels)
    hours = CounterMetricFamily("expbot_gpu_hours", "GPU-hours so far (running attempts up to now)", labels=labels)
    for row in q.usage(session, now):
        spend.add_metric([row.project, row.owner, row.gpu_type], row.cost)
        hours.add_metric([row.project, row.owner, row.gpu_type], row.gpu_hours)
    return [spend, hours]


def _histogram(name: str, documentation: str, d: q.Distribution) -> Any:
    buckets = [(_bound(b), n) for b, n in zip(d.bounds, d.cumulative)] + [("+Inf", d.count)]
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], buckets, sum_value=d.total)
    return family


def _bound(b: float) -> str:
    return repr(float(b))
