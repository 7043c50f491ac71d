"""Delivers stored events (the outbox) to a notifier: at least once, in order, never lost."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from core.errors import ExpbotError
from core.events import Event
from core.ports import Clock, Notifier, UnitOfWork

log = logging.getLogger(__name__)
_FIRST_RETRY = timedelta(seconds=1)
_MAX_RETRY = timedelta(minutes=5)


class DeliveryRetry:
    """When the relay tries again an event the notifier refused, and what it logs: one line per try
    (the traceback of an unexpected error only the first time), retries backing off from 1 s to 5 min.

    A refusal that lasts (Slack down, a message it no longer knows) once meant a full traceback every
    relay round: tens of thousands of log lines an hour that said nothing new.
    """

    def __init__(self) -> None:
        self._event_id: str | None = None
        self._tries = 0
        self._next_try: datetime | None = None

    def due(self, event: Event, now: datetime) -> bool:
        """Whether to try this event now (anything but a refused event before its next try is)."""
        return event.event_id != self._event_id or self._next_try is None or now >= self._next_try

    def failed(self, event: Event, now: datetime, error: Exception) -> None:
        """Log the refusal and set the next try."""
        if event.event_id != self._event_id:
            self._event_id, self._tries = event.event_id, 0
        self._tries += 1
        delay = min(_FIRST_RETRY * 2 ** min(self._tries - 1, 20), _MAX_RETRY)
        self._next_try = now + delay
        show = self._tries == 1 and not isinstance(error, ExpbotError)  # expected troubles name their cause
        log.warning("delivering %s %s failed (%d in a row): %s; next try in %gs", event.kind, event.event_id,
                    self._tries, error, delay.total_seconds(), exc_info=error if show else None, extra=_about(event))

    def delivered(self, event: Event) -> None:
        """The event went through: forget its refusals."""
        if event.event_id == self._event_id:
            if self._tries > 1:
                log.warning("delivered %s %s after %d failed tries", event.kind, event.event_id, self._tries)
            self._event_id, self._tries, self._next_try = None, 0, None


def deliver_pending(
    uow_factory: Callable[[], UnitOfWork], notifier: Notifier, clock: Clock, limit: int = 100,
    observe: Callable[[Event], None] | None = None, retry: DeliveryRetry | None = None,
) -> int:
    """Deliver undelivered events oldest first; stop at the first failure so order is kept.

    `observe` sees every pending event first, delivered or not: the outbox is how events written
    by any replica reach the leader (whose supervisor must start a launch at once). `retry` (kept
    from round to round) spaces out the tries of a refused event; without it every call tries.
    """
    retry = retry or DeliveryRetry()
    delivered = 0
    with uow_factory() as uow:
        pending = uow.outbox.pending(limit)
    for event in pending if observe else ():
        try:
            observe(event)  # type: ignore[misc]
        except Exception:
            log.exception("observing %s %s failed", event.kind, event.event_id, extra=_about(event))
    for event in pending:
        if not retry.due(event, clock.now()):
            break  # in order: nothing after it goes first
        try:
            notifier.notify(event)
        except Exception as e:  # the next round retries, in order (a sick database names its cause)
            retry.failed(event, clock.now(), e)
            break
        retry.delivered(event)
        with uow_factory() as uow:
            uow.outbox.mark_delivered(event.event_id, clock.now())
            uow.commit()
        delivered += 1
    return delivered


def _about(event: Event) -> dict[str, str]:
    """What a log line about this event concerns (fields of the JSON log format)."""
    return {"experiment": event.experiment_name, "experiment_id": event.experiment_id}
