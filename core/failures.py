"""How a loop that must outlive its failures (the supervisor, the outbox relay) logs them."""
from __future__ import annotations

import logging

from core.errors import ExpbotError


class FailureLog:
    """One warning line per failed round, a traceback only for an unexpected error not yet shown, a line on recovery.

    A sick database fails every round (every 2 s) until it is well: a traceback each time buried the
    one line that said why, and said nothing more.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self.in_a_row = 0
        self._shown: set[tuple[type, str]] = set()  # unexpected errors whose traceback is in the log

    def failed(self, error: BaseException) -> None:
        """Log one failed round."""
        self.in_a_row += 1
        if isinstance(error, ExpbotError):  # an expected trouble: its message names the cause
            self.log.warning("%s failed (%d in a row): %s", self.what, self.in_a_row, error)
            return
        key = (type(error), str(error))
        self.log.warning("%s failed (%d in a row): %s: %s", self.what, self.in_a_row, type(error).__name__, error,
                         exc_info=error if key not in self._shown else None)
        self._shown.add(key)

    def succeeded(self) -> None:
        """Log the first good round after failed ones."""
        if self.in_a_row:
            self.log.warning("%s works again after %d failed round(s)", self.what, self.in_a_row)
        self.in_a_row = 0
        self._shown.clear()
