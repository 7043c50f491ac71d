"""An in-memory store behind core's UnitOfWork port, made for speed: no copies, nothing to roll back.

The simulation never fails a transaction, so objects are shared and a commit only files the
experiments' new events (the arm's record of every decision, which the tests compare with core's).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from core.events import Event
from core.model import Experiment, State
from core.ports import NodeFault


class SimDatabase:
    """Everything stored, shared by every unit of work made from it."""

    def __init__(self) -> None:
        self.experiments: dict[str, Experiment] = {}
        self.by_name: dict[str, Experiment] = {}
        self.events: dict[str, list[Event]] = {}
        self.audit: list[dict] = []


class _Experiments:
    def __init__(self, db: SimDatabase, touched: dict[str, Experiment]) -> None:
        self.db, self.touched = db, touched

    def _seen(self, experiment: Experiment | None) -> Experiment | None:
        if experiment is not None:
            self.touched[experiment.id] = experiment
        return experiment

    def add(self, experiment: Experiment) -> None:
        self.touched[experiment.id] = experiment

    def get(self, experiment_id: str) -> Experiment | None:
        return self._seen(self.db.experiments.get(experiment_id))

    def get_by_name(self, name: str) -> Experiment | None:
        return self._seen(self.db.by_name.get(name))

    def get_by_idempotency_key(self, key: str) -> Experiment | None:
        return None  # launches in the simulation carry no key

    def failures_on_node(self, node: str, since: datetime, failure_classes: list[str]) -> list[NodeFault]:
        # Rare (hardware and network faults only): a scan is fast enough.
        found = [NodeFault(e.id, a.number, a.ended_at, a.reason) for e in self.db.experiments.values()
                 for a in e.attempts if a.node == node and a.ended_at is not None and a.ended_at >= since
                 and str(a.failure_class) in failure_classes]
        return sorted(found, key=lambda f: f.ended_at)

    def active(self) -> list[Experiment]:
        return [self._seen(e) for e in self.db.experiments.values() if not e.is_terminal]  # type: ignore[misc]

    def list(self, *, states: Iterable[State] | None = None, **_: Any) -> list[Experiment]:
        wanted = set(states) if states is not None else None
        return [e for e in self.db.experiments.values() if wanted is None or e.state in wanted]


class _Audit:
    def __init__(self, db: SimDatabase) -> None:
        self.db = db

    def record(self, *, at: datetime, actor: str, action: str, experiment_id: str | None, detail: dict) -> None:
        self.db.audit.append({"at": at, "actor": actor, "action": action, "experiment_id": experiment_id,
                              "detail": detail})

    def entries(self, *, experiment_id: str | None = None, action: str | None = None) -> list[dict]:
        return [e for e in self.db.audit if (action is None or e["action"] == action)
                and (experiment_id is None or e["experiment_id"] == experiment_id)]


class SimUnitOfWork:
    """core's UnitOfWork over a SimDatabase."""

    def __init__(self, db: SimDatabase) -> None:
        self.db = db
        self._touched: dict[str, Experiment] = {}
        self.experiments = _Experiments(db, self._touched)
        self.audit = _Audit(db)
        self.outbox = None
        self.budgets = None
        self.costs = None

    def __enter__(self) -> "SimUnitOfWork":
        return self

    def __exit__(self, *exc: object) -> None:
        self._touched.clear()

    def commit(self) -> None:
        for experiment in self._touched.values():
            if experiment.id not in self.db.experiments:
                self.db.experiments[experiment.id] = experiment
            self.db.by_name[experiment.name] = experiment
            if experiment.events:
                self.db.events.setdefault(experiment.id, []).extend(experiment.events)
                experiment.events = []
            experiment.version += 1

    def rollback(self) -> None:
        self._touched.clear()

    def collect_new_events(self) -> Iterator[Event]:
        return iter(())
