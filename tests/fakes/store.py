"""In-memory unit of work: the fake for core's store ports (passes the same contract tests)."""
from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime

from core.errors import ConcurrentUpdate, DuplicateLaunch, NameInUse
from core.events import Event
from core.model import ACTIVE, Experiment, State
from core.ports import NodeFault
from tests.fakes.governance import FakeAuditLog, FakeBudgetStore


class FakeDatabase:
    """Shared state of every FakeUnitOfWork made from it (like one database file)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.experiments: dict[str, Experiment] = {}
        self.events: list[Event] = []
        self.delivered: dict[str, datetime] = {}
        self.audit: list[dict] = []
        self.budgets: dict[tuple[str, str], float] = {}
        self.alerts: set[tuple[str, str, str, int]] = set()


class FakeRepository:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self.seen: dict[str, Experiment] = {}
        self.snapshots: dict[str, Experiment] = {}  # as loaded, to tell what changed
        self.added: list[Experiment] = []

    def _load(self, stored: Experiment | None) -> Experiment | None:
        if stored is None:
            return None
        if stored.id in self.seen:
            return self.seen[stored.id]
        loaded = copy.deepcopy(stored)
        loaded.events = []
        self.seen[loaded.id] = loaded
        self.snapshots[loaded.id] = copy.deepcopy(loaded)
        return loaded

    def add(self, experiment: Experiment) -> None:
        self.added.append(experiment)
        self.seen[experiment.id] = experiment

    def get(self, experiment_id: str) -> Experiment | None:
        return self._load(self._db.experiments.get(experiment_id))

    def get_by_name(self, name: str) -> Experiment | None:
        matches = [e for e in self._db.experiments.values() if e.name == name]
        return self._load(max(matches, key=lambda e: e.created_at, default=None))

    def get_by_idempotency_key(self, key: str) -> Experiment | None:
        match = next((e for e in self._db.experiments.values() if e.idempotency_key == key), None)
        return self._load(match)

    def by_id_prefix(self, prefix: str, limit: int = 2) -> list[Experiment]:
        if not prefix or not prefix.isalnum():
            return []
        rows = sorted((e for e in self._db.experiments.values() if e.id.startswith(prefix)),
                      key=lambda e: (e.created_at, e.id), reverse=True)
        return [self._load(e) for e in rows[:limit]]  # type: ignore[misc]

    def failures_on_node(self, node: str, since: datetime, failure_classes: list[str]) -> list[NodeFault]:
        found = [NodeFault(e.id, a.number, a.ended_at, a.reason) for e in self._db.experiments.values()
                 for a in e.attempts
                 if a.node == node and a.ended_at is not None and a.ended_at >= since
                 and str(a.failure_class) in failure_classes]
        return sorted(found, key=lambda f: f.ended_at)

    def by_launch(self, launch_id: str) -> list[Experiment]:
        rows = [e for e in self._db.experiments.values() if e.launch_id == launch_id]
        rows.sort(key=lambda e: (e.created_at, len(e.name), e.name))  # sweep-2 before sweep-10
        return [self._load(e) for e in rows]  # type: ignore[misc]

    def list(
        self,
        *,
        states: Iterable[State] | None = None,
        owner: str | None = None,
        project: str | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> list[Experiment]:
        wanted = set(states) if states is not None else None
        rows = [
            e
            for e in self._db.experiments.values()
            if (wanted is None or e.state in wanted)
            and (owner is None or e.owner == owner)
            and (project is None or e.spec.project == project)
            and (group is None or e.spec.group == group)
        ]
        rows.sort(key=lambda e: (e.created_at, e.id), reverse=True)
        return [self._load(e) for e in rows[:limit]]  # type: ignore[misc]

    def active(self) -> list[Experiment]:
        return list(reversed(self.list(states=ACTIVE)))


class FakeOutbox:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def pending(self, limit: int = 100) -> list[Event]:
        return [e for e in self._db.events if e.event_id not in self._db.delivered][:limit]

    def mark_delivered(self, event_id: str, at: datetime) -> None:
        self._db.delivered.setdefault(event_id, at)

    def for_experiment(self, experiment_id: str) -> list[Event]:
        return [e for e in self._db.events if e.experiment_id == experiment_id]


class FakeUnitOfWork:
    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.db = db or FakeDatabase()
        self.committed = 0
        self._new_events: list[Event] = []

    def __enter__(self) -> "FakeUnitOfWork":
        self.experiments = FakeRepository(self.db)
        self.outbox = FakeOutbox(self.db)
        self.audit = FakeAuditLog(self.db)
        self.budgets = FakeBudgetStore(self.db)
        from tests.fakes.costs import FakeCostQueries  # it imports FakeDatabase from here

        self.costs = FakeCostQueries(self.db)
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()

    def commit(self) -> None:
        with self.db.lock:
            # Like a unique constraint: also two launches with one key in the same commit.
            ids = set(self.db.experiments)
            keys = {e.idempotency_key for e in self.db.experiments.values() if e.idempotency_key}
            for exp in self.experiments.added:
                if exp.id in ids or (exp.idempotency_key and exp.idempotency_key in keys):
                    raise DuplicateLaunch(exp.idempotency_key or exp.id)
                ids.add(exp.id)
                if exp.idempotency_key:
                    keys.add(exp.idempotency_key)
            changed = [
                exp
                for exp in self.experiments.seen.values()
                if exp.events or exp != self.experiments.snapshots.get(exp.id)
            ]
            self._check_active_names(changed)
            for exp in changed:
                stored = self.db.experiments.get(exp.id)
                if stored is not None and stored.version != exp.version:
                    raise ConcurrentUpdate(f"{exp.name} changed meanwhile")
            pending: list[Event] = []
            for exp in changed:
                exp.version += 1
                snapshot = copy.deepcopy(exp)
                snapshot.events = []
                self.db.experiments[exp.id] = snapshot
                self.experiments.snapshots[exp.id] = copy.deepcopy(snapshot)
                pending.extend(exp.events)
                exp.events = []
            self.audit.flush()
            self.budgets.flush()
            self.db.events.extend(pending)
            self._new_events.extend(pending)
            self.experiments.added = []
            self.committed += 1

    def _check_active_names(self, changed: list[Experiment]) -> None:
        # Like the partial unique index: one active experiment per name.
        after = {e.id: e for e in self.db.experiments.values()} | {e.id: e for e in changed}
        names: set[str] = set()
        for exp in after.values():
            if exp.state in ACTIVE:
                if exp.name in names:
                    raise NameInUse(f"an experiment named {exp.name!r} is already active")
                names.add(exp.name)

    def rollback(self) -> None:
        self.experiments.seen.clear()
        self.experiments.added = []
        self.audit.staged = []
        self.budgets.staged = []

    def collect_new_events(self) -> Iterator[Event]:
        while self._new_events:
            yield self._new_events.pop(0)
