"""The audit trail and admin-set budgets: staged in the unit of work, written in its transaction."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.db.engine import write_transaction
from adapters.db.rows_cost import AuditRow, BudgetAlertRow, BudgetRow

AUDIT = AuditRow.__table__
BUDGET = BudgetRow.__table__
ALERT = BudgetAlertRow.__table__


class SqlAuditLog:
    """core.ports.AuditLog: entries are written with the rest of the unit of work, or not at all."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.staged: list[dict[str, Any]] = []

    def record(self, *, at: datetime, actor: str, action: str, experiment_id: str | None, detail: dict) -> None:
        """Stage one decision; commit() writes it."""
        self.staged.append({"at": at, "actor": actor, "action": action, "experiment_id": experiment_id,
                            "detail": detail})

    def flush(self, conn: sa.Connection) -> None:
        """Write the staged entries inside the caller's transaction."""
        if self.staged:
            conn.execute(sa.insert(AUDIT), self.staged)
        self.staged = []

    def entries(self, *, experiment_id: str | None = None, action: str | None = None) -> list[dict]:
        """Audit entries, oldest first."""
        stmt = sa.select(AUDIT).order_by(AUDIT.c.id)
        if experiment_id is not None:
            stmt = stmt.where(AUDIT.c.experiment_id == experiment_id)
        if action is not None:
            stmt = stmt.where(AUDIT.c.action == action)
        return [
            {k: row[k] for k in ("at", "actor", "action", "experiment_id", "detail")}
            for row in self._session.execute(stmt).mappings()
        ]


class SqlBudgetStore:
    """core.ports.BudgetStore: admin-set budgets (staged), and once-per-month alert claims."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.staged: list[dict[str, Any]] = []

    def overrides(self) -> dict[tuple[str, str], float]:
        """(scope, name) -> monthly limit, for budgets set at runtime."""
        rows = self._session.execute(sa.select(BUDGET.c.scope, BUDGET.c.name, BUDGET.c.monthly_limit))
        return {(scope, name): limit for scope, name, limit in rows}

    def set(self, *, scope: str, name: str, monthly_limit: float, by: str, at: datetime) -> None:
        """Stage a budget change; commit() writes it."""
        self.staged.append({"scope": scope, "name": name, "monthly_limit": monthly_limit,
                            "updated_by": by, "updated_at": at})

    def flush(self, conn: sa.Connection) -> None:
        """Write staged budgets (replacing any earlier value) inside the caller's transaction."""
        for row in self.staged:
            conn.execute(sa.delete(BUDGET).where(BUDGET.c.scope == row["scope"], BUDGET.c.name == row["name"]))
            conn.execute(sa.insert(BUDGET), row)
        self.staged = []

    def claim_alert(self, *, scope: str, name: str, month: str, threshold: int, at: datetime) -> bool:
        """True for the first claimer only (the primary key decides, across replicas and restarts)."""
        try:
            with write_transaction(self._session) as conn:
                conn.execute(sa.insert(ALERT).values(scope=scope, name=name, month=month, threshold=threshold,
                                                     sent_at=at))
        except IntegrityError:
            return False
        return True
