"""In-memory idle-state store: the fake of adapters.db.idle_states.SqlIdleStates (same contract tests)."""
from __future__ import annotations

import threading
from datetime import datetime

from core.idle import IdleState
from core.model import ACTIVE
from tests.fakes.store import FakeDatabase


class FakeIdleStates:
    """Idle states in a dict; `db` (the fake store's database) lets `since` see experiments."""

    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.db = db
        self.states: dict[str, IdleState] = {}
        self.saves = 0
        self._lock = threading.Lock()

    def get(self, experiment_id: str) -> IdleState:
        """The stored state, or a fresh IdleState."""
        return self.states.get(experiment_id, IdleState())

    def save(self, experiment_id: str, state: IdleState, *, expected: IdleState | None = None) -> bool:
        """Store it; with `expected`, only if the stored state still equals it."""
        with self._lock:
            if expected is not None and self.get(experiment_id) != expected:
                return False
            self.states[experiment_id] = state
            self.saves += 1
            return True

    def total_idle_gpu_hours(self, *, since: datetime | None = None) -> float:
        """Idle GPU-hours of every experiment (with `since`: still active or updated since then)."""
        total = 0.0
        for experiment_id, state in self.states.items():
            if since is not None:
                exp = self.db.experiments.get(experiment_id) if self.db is not None else None
                if exp is None or not (exp.state in ACTIVE or (exp.updated_at is not None and exp.updated_at >= since)):
                    continue
            total += state.idle_gpu_seconds
        return total / 3600.0
