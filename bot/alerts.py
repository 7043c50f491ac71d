"""Delivering budget alerts: to the project's channel (else the default one) on Slack, else the log."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core.budget import PROJECT, BudgetConfig
from core.budget_alerts import BudgetAlert
from core.cost import Prices

log = logging.getLogger("expbot.serve")


@dataclass(frozen=True)
class BudgetAlertPoster:
    """core.scheduled.send_budget_alerts' `deliver`: one alert, one message."""

    prices: Prices
    budgets: BudgetConfig
    default_channel: str | None = None
    slack_client: Any = None  # slack_sdk WebClient when Slack is configured

    def __call__(self, alert: BudgetAlert) -> None:
        """Post the alert to its channel; without Slack or a channel, log it."""
        text = alert.text(self.prices)
        channel = self.budgets.channels.get(alert.name) if alert.scope == PROJECT else None
        channel = channel or self.default_channel
        if self.slack_client is None or not channel:
            log.warning("budget alert: %s", text)
            return
        try:
            self.slack_client.chat_postMessage(channel=channel, text=text)
        except Exception:  # the alert is claimed already: log it rather than lose it silently
            log.exception("could not post budget alert to %s: %s", channel, text)
