"""Cost and budget reports, shared by `/experiment cost|budget` and `expbot cost|budget`."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.approvals import statuses_of
from core.budget import BudgetConfig, BudgetStatus
from core.budget_alerts import all_limits
from core.cost import Prices
from core.ports import SpendRow, UnitOfWork


@dataclass(frozen=True)
class CostReport:
    start: datetime
    end: datetime
    total: float
    by_project: list[SpendRow]
    by_owner: list[SpendRow]


def cost_report(uow: UnitOfWork, now: datetime, days: int, project: str | None = None) -> CostReport:
    """Spend over the last `days` days, by project and by owner (one project's owners if given)."""
    start = now - timedelta(days=days)
    by_project = uow.costs.spend_by("project", start=start, end=now, now=now)
    if project is not None:
        by_project = [row for row in by_project if row.key == project]
        owners = _owners_of(uow, project, start, now)
    else:
        owners = uow.costs.spend_by("owner", start=start, end=now, now=now)
    return CostReport(start, now, sum(r.cost for r in by_project), by_project, owners)


def _owners_of(uow: UnitOfWork, project: str, start: datetime, now: datetime) -> list[SpendRow]:
    everyone = uow.costs.spend_by("owner", start=start, end=now, now=now)
    rows = []
    for row in everyone:
        cost = uow.costs.spent(start=start, end=now, now=now, project=project, owner=row.key)
        if cost > 0:
            rows.append(SpendRow(row.key, cost, 0.0))
    return sorted(rows, key=lambda r: r.cost, reverse=True)


def budget_report(uow: UnitOfWork, config: BudgetConfig, prices: Prices, now: datetime) -> list[BudgetStatus]:
    """Every budget this month: spent, committed to running experiments, and what remains."""
    return statuses_of(uow, all_limits(config, uow.budgets.overrides()), config, prices, now)
