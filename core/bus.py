"""A small message bus: commands go to exactly one handler, the events they cause to any number."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core.commands import Command
from core.errors import ConcurrentUpdate
from core.events import Event
from core.ports import UnitOfWork

log = logging.getLogger(__name__)

CommandHandler = Callable[[Any, UnitOfWork], Any]
EventHandler = Callable[[Any], None]


class MessageBus:
    """Runs command handlers in a unit of work and passes the events they committed on."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        command_handlers: dict[type[Command], CommandHandler],
        event_handlers: dict[type[Event], list[EventHandler]] | None = None,
        conflict_retries: int = 3,
    ) -> None:
        self.uow_factory = uow_factory
        self.command_handlers = command_handlers
        self.event_handlers = event_handlers or {}
        self.conflict_retries = conflict_retries
        self._all_handlers: list[EventHandler] = []

    def handle(self, command: Command) -> Any:
        """Run the command's handler (retrying lost optimistic-lock races), then its events."""
        handler = self.command_handlers[type(command)]
        uow = self.uow_factory()  # one per command: handlers run concurrently on Slack's threads
        for attempt in range(self.conflict_retries + 1):
            try:
                result = handler(command, uow)
                break
            except ConcurrentUpdate:
                # Somebody (usually the supervisor) saved the same experiment first: redo on fresh data.
                if attempt == self.conflict_retries:
                    raise
                log.info("retrying %s after a concurrent update", type(command).__name__)
        for event in list(uow.collect_new_events()):
            self.publish(event)
        return result

    def subscribe_all(self, handler: EventHandler) -> None:
        """Run `handler` for every event (e.g. to wake the outbox relay)."""
        self._all_handlers.append(handler)

    def publish(self, event: Event) -> None:
        """Run every in-process handler of an event; one failing does not stop the others."""
        for handler in [*self.event_handlers.get(type(event), []), *self._all_handlers]:
            try:
                handler(event)
            except Exception:
                log.exception("event handler %s failed for %s", handler, event.kind)
