"""Serve's scheduled jobs only send core commands through the bus: these are the handlers bootstrap registers."""
from __future__ import annotations

import functools
from typing import Any

from bot.alerts import BudgetAlertPoster
from bot.config import Settings
from core import commands, scheduled
from core.budget import BudgetConfig
from core.bus import CommandHandler
from core.cost import Prices
from core.digest_service import DigestService
from core.ports import Clock


def scheduled_handlers(
    settings: Settings, digest: DigestService, prices: Prices, budgets: BudgetConfig, clock: Clock, slack_client: Any
) -> dict[type[commands.Command], CommandHandler]:
    """The handlers of the scheduler's commands: the daily digest and budget alerts."""
    alerts = BudgetAlertPoster(prices, budgets, settings.slack_default_channel, slack_client)
    return {
        commands.PostDigest: functools.partial(scheduled.post_digest, digest=digest, clock=clock),
        commands.SendBudgetAlerts: functools.partial(
            scheduled.send_budget_alerts, config=budgets, clock=clock, deliver=alerts,
        ),
    }
