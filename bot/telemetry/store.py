"""The store's figures as Prometheus metrics, read at every scrape (a custom collector).

Counters computed from the store (spend, GPU-hours, attempts, restarts) are the same on every
replica and survive restarts: dashboards take `max without (instance, pod)` across replicas, never a sum.
Spend and GPU-hours are what the digest computes: the days before today (in the budgets' time zone)
are read at the first scrape and kept (each day that ends is added to them), and only today's attempts
are read at each scrape, as the digest does.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from adapters.db import metrics_queries as q
from adapters.db.cost_queries import SqlCostQueries
from core.budget import PROJECT, BudgetConfig, month_window
from core.budget_alerts import all_limits
from core.digest import day_window
from core.model import State
from core.ports import Clock, UnitOfWork

log = logging.getLogger(__name__)
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # before any attempt: the start of "all days before today"
Key = tuple[str, str, str]  # project, user, GPU type
READ_TIMEOUT_SECONDS = 8.0  # under Prometheus's default scrape timeout (10 s)


class StoreCollector:
    """Reads experiments, attempts, spend, budgets and the outbox at scrape time."""

    def __init__(self, session_factory: Any, uow_factory: Callable[[], UnitOfWork], clock: Clock,
                 budgets: BudgetConfig, idle_gpu_hours: Callable[[], float]) -> None:
        self._sessions, self._uows, self._clock = session_factory, uow_factory, clock
        self._budgets, self._idle = budgets, idle_gpu_hours
        self._lock = threading.Lock()  # scrapes may overlap (several Prometheus servers)
        self._closed: tuple[datetime, dict[Key, tuple[float, float]]] | None = None  # (today's start, before it)
        # Reads run on a thread of their own, waited for at most READ_TIMEOUT_SECONDS: a hung database
        # must not hold the HTTP server's request threads (Slack's acks and the probes share them).
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-store")
        self._running: Future | None = None

    def describe(self) -> list[Any]:
        """Nothing: the families are made at scrape time."""
        return []  # families are made at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        """Every store metric, or just expbot_store_up 0 when the database cannot answer."""
        up = GaugeMetricFamily("expbot_store_up", "1 when the last scrape could read the database, else 0")
        try:
            families = self._read_in_time()
        except Exception as e:  # a sick database: the process metrics still come, and this says why not these
            log.warning("metrics: cannot read the store: %s", " ".join(str(e).split())[:300] or type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read_in_time(self) -> list[Any]:
        with self._lock:
            if self._running is not None and not self._running.done():
                raise TimeoutError("an earlier scrape's read of the database has not finished")
            self._running = running = self._pool.submit(self._read, self._clock.now())
        try:
            return running.result(timeout=READ_TIMEOUT_SECONDS)
        except FutureTimeout:
            raise TimeoutError(f"the database did not answer within {READ_TIMEOUT_SECONDS:g}s") from None

    def _read(self, now: datetime) -> list[Any]:
        with self._sessions() as session:
            families = [*_experiments(session), *_attempts(session), *_outbox(session, now),
                        *self._usage(session, now), self._budget_ratio(session, now)]
        idle = CounterMetricFamily("expbot_idle_gpu_hours", "GPU-hours experiments spent idle (the idle check's totals)")
        idle.add_metric([], self._idle())
        families.append(idle)
        return families

    def _usage(self, session: Any, now: datetime) -> list[Any]:
        today = day_window(now.astimezone(ZoneInfo(self._budgets.timezone)).date(), self._budgets.timezone)[0]
        # Reads run one at a time (_read_in_time), so the kept part needs no lock of its own.
        if self._closed is None:  # the first scrape: every attempt's part before today
            self._closed = (today, _add({}, q.usage(session, _EPOCH, today, now)))
        elif self._closed[0] != today:  # a new day: the day that ended joins the kept part
            self._closed = (today, _add(dict(self._closed[1]), q.usage(session, self._closed[0], today, now)))
        totals = _add(dict(self._closed[1]), q.usage(session, today, max(now, today), now))
        labels = ["project", "user", "gpu_type"]
        spend = CounterMetricFamily("expbot_spend", "Spend so far (running attempts up to now), as the digest prices it",
                                    labels=labels)
        hours = CounterMetricFamily("expbot_gpu_hours", "GPU-hours so far (running attempts up to now)", labels=labels)
        for key, (cost, gpu_hours) in sorted(totals.items()):
            spend.add_metric(list(key), cost)
            hours.add_metric(list(key), gpu_hours)
        return [spend, hours]

    def _budget_ratio(self, session: Any, now: datetime) -> Any:
        family = GaugeMetricFamily("expbot_budget_used_ratio", "This month's spend over the project's monthly budget",
                                   labels=["project"])
        start, end, _ = month_window(now, self._budgets.timezone)
        with self._uows() as uow:
            limits = [limit for limit in all_limits(self._budgets, uow.budgets.overrides()) if limit.scope == PROJECT]
        if not limits:
            return family
        # One scan for every project, not one per budget.
        spent = {row.key: row.cost for row in SqlCostQueries(session).spend_by("project", start=start, end=end, now=now)}
        for limit in limits:
            used = spent.get(limit.name, 0.0)
            family.add_metric([limit.name], used / limit.monthly if limit.monthly > 0 else float(used > 0))
        return family


def _add(totals: dict[Key, tuple[float, float]], rows: list[q.Usage]) -> dict[Key, tuple[float, float]]:
    """`totals` with each row's spend and GPU-hours added to its label set's."""
    for u in rows:
        cost, hours = totals.get((u.project, u.owner, u.gpu_type), (0.0, 0.0))
        totals[(u.project, u.owner, u.gpu_type)] = (cost + u.cost, hours + u.gpu_hours)
    return totals


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
