"""Budget alerts: at 50/80/100% of a monthly budget, each threshold once per month."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.budget import PROJECT, USER, BudgetConfig, BudgetStatus, Limit, month_window, thresholds_crossed
from core.cost import Prices
from core.mrkdwn import escape, mention
from core.ports import Clock, UnitOfWork


@dataclass(frozen=True)
class BudgetAlert:
    scope: str
    name: str
    month: str
    threshold: int
    spent: float
    limit: float

    def text(self, prices: Prices) -> str:
        """The alert as one line."""
        icon = ":rotating_light:" if self.threshold >= 100 else ":warning:"
        name = mention(self.name) if self.scope == USER else f"*{escape(self.name)}*"  # a user is a person
        return (f"{icon} {self.scope} {name} has spent {prices.format(self.spent)} of its "
                f"{prices.format(self.limit)} budget for {self.month} ({self.threshold}% reached)")


def all_limits(config: BudgetConfig, overrides: dict[tuple[str, str], float]) -> list[Limit]:
    """Every configured or admin-set budget (runtime values win)."""
    merged = {(PROJECT, n): v for n, v in config.projects.items()} | {(USER, n): v for n, v in config.users.items()}
    merged |= overrides
    return [Limit(scope, name, limit) for (scope, name), limit in sorted(merged.items())]


def due_alerts(uow_factory: Callable[[], UnitOfWork], config: BudgetConfig, clock: Clock) -> list[BudgetAlert]:
    """Alerts to send now; each (budget, month, threshold) is claimed so it is sent only once."""
    return claim_due_alerts(uow_factory(), config, clock.now())


def claim_due_alerts(uow: UnitOfWork, config: BudgetConfig, now: datetime) -> list[BudgetAlert]:
    """Alerts to send at `now`, claimed in `uow` (each budget, month and threshold once)."""
    start, end, month = month_window(now, config.timezone)
    alerts = []
    with uow:
        for limit in all_limits(config, uow.budgets.overrides()):
            spent = uow.costs.spent(start=start, end=end, now=now, **limit.selector())
            status = BudgetStatus(limit, spent, 0.0)
            for threshold in thresholds_crossed(status, config.alert_thresholds):
                if uow.budgets.claim_alert(scope=limit.scope, name=limit.name, month=month, threshold=threshold, at=now):
                    alerts.append(BudgetAlert(limit.scope, limit.name, month, threshold, spent, limit.monthly))
    return alerts
