"""Handlers of the commands serve's scheduler sends through the bus: the daily digest and budget alerts."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date

from core import commands
from core.budget import BudgetConfig
from core.budget_alerts import BudgetAlert, claim_due_alerts
from core.digest_service import DigestService
from core.ports import Clock, UnitOfWork


def post_digest(cmd: commands.PostDigest, uow: UnitOfWork, *, digest: DigestService, clock: Clock) -> list[date]:
    """Post whatever digest is due and not yet posted; the days posted."""
    # The digest reads through its own ports (one view per digest), not through this unit of work.
    return digest.post_due(clock.now(), missed_only=cmd.missed_only)


def send_budget_alerts(
    cmd: commands.SendBudgetAlerts,
    uow: UnitOfWork,
    *,
    config: BudgetConfig,
    clock: Clock,
    deliver: Callable[[BudgetAlert], None],
) -> list[BudgetAlert]:
    """Claim every budget alert that is due and hand each to `deliver`; the alerts sent."""
    alerts = claim_due_alerts(uow, config, clock.now())
    for alert in alerts:
        deliver(alert)
    return alerts
