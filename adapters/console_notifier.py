"""Notifier that writes each event as a log line (the embedded default, with no Slack)."""
from __future__ import annotations

import logging

from core.events import Event
from core.messages import describe
from core.ports import Notifier

log = logging.getLogger("expbot.events")


class ConsoleNotifier:
    """Logs `[experiment] what happened` for every event."""

    def notify(self, event: Event) -> None:
        """Write one line for the event."""
        about = {"experiment": event.experiment_name, "experiment_id": event.experiment_id,
                 "attempt": getattr(event, "attempt", None)}  # fields of the JSON log format
        log.info("[%s] %s", event.experiment_name, describe(event), extra=about)


class AlsoLogged:
    """A notifier (Slack's) that also writes the console line: with Slack on, serve's log still holds
    every decision (for a log collector, and for whoever reads the log rather than the channel)."""

    def __init__(self, inner: Notifier) -> None:
        self.inner, self.console = inner, ConsoleNotifier()

    def notify(self, event: Event) -> None:
        """Deliver (a transient failure raises, so the relay retries and nothing is logged twice), then log."""
        self.inner.notify(event)
        self.console.notify(event)
