"""In-memory audit trail and budget store (the fakes of core's AuditLog and BudgetStore)."""
from __future__ import annotations

from datetime import datetime
from typing import Any


class FakeAuditLog:
    def __init__(self, db: Any) -> None:
        self._db = db
        self.staged: list[dict[str, Any]] = []

    def record(self, *, at: datetime, actor: str, action: str, experiment_id: str | None, detail: dict) -> None:
        self.staged.append({"at": at, "actor": actor, "action": action, "experiment_id": experiment_id,
                            "detail": detail})

    def flush(self) -> None:
        self._db.audit.extend(self.staged)
        self.staged = []

    def entries(self, *, experiment_id: str | None = None, action: str | None = None) -> list[dict]:
        return [
            e for e in self._db.audit
            if (experiment_id is None or e["experiment_id"] == experiment_id) and (action is None or e["action"] == action)
        ]


class FakeBudgetStore:
    def __init__(self, db: Any) -> None:
        self._db = db
        self.staged: list[tuple[tuple[str, str], float]] = []

    def overrides(self) -> dict[tuple[str, str], float]:
        return dict(self._db.budgets)

    def set(self, *, scope: str, name: str, monthly_limit: float, by: str, at: datetime) -> None:
        self.staged.append(((scope, name), monthly_limit))

    def flush(self) -> None:
        for key, limit in self.staged:
            self._db.budgets[key] = limit
        self.staged = []

    def claim_alert(self, *, scope: str, name: str, month: str, threshold: int, at: datetime) -> bool:
        key = (scope, name, month, threshold)
        with self._db.lock:
            if key in self._db.alerts:
                return False
            self._db.alerts.add(key)
            return True
