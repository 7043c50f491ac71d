"""The real clock behind core's Clock port."""
from __future__ import annotations

from datetime import datetime, timezone


class SystemClock:
    """Wall-clock time from the operating system."""

    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        return datetime.now(timezone.utc)
