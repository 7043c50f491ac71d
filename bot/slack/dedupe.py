"""Slack delivers at least once: Events API retries and Socket Mode retries reuse the event_id."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from slack_bolt import BoltResponse


class SeenEvents:
    """Remembers event ids for `ttl` seconds (bounded), to answer a redelivery without redoing it."""

    def __init__(self, ttl: float = 600.0, max_size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_size, self.clock = ttl, max_size, clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is seen (within ttl), False for a redelivery."""
        now = self.clock()
        with self._lock:
            while self._seen and (now - next(iter(self._seen.values())) > self.ttl or len(self._seen) > self.max_size):
                self._seen.popitem(last=False)
            if event_id in self._seen:
                return False
            self._seen[event_id] = now
            return True


def dedupe_middleware(seen: SeenEvents):
    """Bolt middleware: a redelivered event is acknowledged and dropped before any listener runs."""

    def middleware(body: dict, next: Callable[[], BoltResponse]) -> BoltResponse | None:  # noqa: A002
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if event_id and not seen.first_time(event_id):
            return BoltResponse(status=200, body="")
        return next()

    return middleware
