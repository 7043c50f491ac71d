"""Notifier that writes each event as a log line (the embedded default, with no Slack)."""
from __future__ import annotations

import logging

from core.events import Event
from core.messages import describe

log = logging.getLogger("expbot.events")


class ConsoleNotifier:
    """Logs `[experiment] what happened` for every event."""

    def notify(self, event: Event) -> None:
        """Write one line for the event."""
        about = {"experiment": event.experiment_name, "experiment_id": event.experiment_id,
                 "attempt": getattr(event, "attempt", None)}  # fields of the JSON log format
        log.info("[%s] %s", event.experiment_name, describe(event), extra=about)
