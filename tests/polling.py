"""Wait for asynchronous effects in tests: poll with a deadline, never a bare long sleep."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "a condition", interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy and return its value; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
