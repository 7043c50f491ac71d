"""Delivers stored events (the outbox) to a notifier: at least once, in order, never lost."""
from __future__ import annotations

import logging
from collections.abc import Callable

from core.errors import DatabaseUnavailable
from core.events import Event
from core.ports import Clock, Notifier, UnitOfWork

log = logging.getLogger(__name__)


def deliver_pending(
    uow_factory: Callable[[], UnitOfWork], notifier: Notifier, clock: Clock, limit: int = 100,
    observe: Callable[[Event], None] | None = None,
) -> int:
    """Deliver undelivered events oldest first; stop at the first failure so order is kept.

    `observe` sees every pending event first, delivered or not: the outbox is how events written
    by any replica reach the leader (whose supervisor must start a launch at once).
    """
    delivered = 0
    with uow_factory() as uow:
        pending = uow.outbox.pending(limit)
    for event in pending if observe else ():
        try:
            observe(event)  # type: ignore[misc]
        except Exception:
            log.exception("observing %s %s failed", event.kind, event.event_id, extra=_about(event))
    for event in pending:
        try:
            notifier.notify(event)
        except DatabaseUnavailable as e:  # the notifier's own records (Slack threads): one line, it names the cause
            log.warning("delivering %s %s failed; will retry: %s", event.kind, event.event_id, e, extra=_about(event))
            break
        except Exception:
            log.warning("delivering %s %s failed; will retry", event.kind, event.event_id, exc_info=True,
                        extra=_about(event))
            break
        with uow_factory() as uow:
            uow.outbox.mark_delivered(event.event_id, clock.now())
            uow.commit()
        delivered += 1
    return delivered


def _about(event: Event) -> dict[str, str]:
    """What a log line about this event concerns (fields of the JSON log format)."""
    return {"experiment": event.experiment_name, "experiment_id": event.experiment_id}
