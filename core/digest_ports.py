"""What the daily digest reads and where it goes: the ports its service is built on."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Protocol

from core.digest import Digest
from core.ports import SpendRow

# (day, start, end): one local day as a UTC window [start, end)
DayWindow = tuple[date, datetime, datetime]


class DigestQueries(Protocol):
    """The digest's reads, all from one consistent view of the store (one session)."""

    def spend_by(self, key: str, *, start: datetime, end: datetime, now: datetime) -> list[SpendRow]:
        """Spend in [start, end) per project or owner (`key`), biggest first; running attempts accrue to `now`."""
        ...

    def daily_spend_by_project(self, days: list[DayWindow], now: datetime) -> dict[date, dict[str, float]]:
        """Cost per project of each day window (contiguous and ascending); projects that spent nothing left out."""
        ...

    def outcome_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Experiments that ended succeeded / failed / stopped in [start, end), and restarts begun then."""
        ...

    def successful_in(self, start: datetime, end: datetime) -> int:
        """How many experiments succeeded in [start, end)."""
        ...

    def infra_failures_by_class(self, start: datetime, end: datetime) -> dict[str, int]:
        """Attempts that ended in [start, end) with an infrastructure failure, counted by failure class."""
        ...

    def node_reports(self, start: datetime, end: datetime) -> list[dict]:
        """The details of the sick-node reports made in [start, end), oldest first."""
        ...


# Opens the digest's reads for one digest; closing it ends the view.
OpenDigestQueries = Callable[[], AbstractContextManager[DigestQueries]]


class SpendHistory(Protocol):
    """Closed days' spend per project, kept so that a digest reads history instead of recomputing it."""

    def get(self, tz: str, first: date, last: date) -> dict[date, dict[str, float]]:
        """The kept days from `first` through `last` (days never kept are absent)."""
        ...

    def put(self, tz: str, days: dict[date, dict[str, float]], at: datetime) -> None:
        """Keep closed days' spend; a day kept already is left as it is."""
        ...


class DigestClaims(Protocol):
    """Which days' digests were claimed and posted: once per day across replicas and restarts."""

    def claim(self, day: str, by: str, at: datetime) -> bool:
        """True for the one caller that may post `day`'s digest."""
        ...

    def mark_posted(self, day: str, channel: str, ts: str, at: datetime) -> None:
        """Record where `day`'s digest was posted."""
        ...

    def last_posted_day(self) -> str | None:
        """The latest day whose digest was posted ('YYYY-MM-DD'), or None."""
        ...


class DigestPublisher(Protocol):
    """Where a composed digest is posted (Slack: a parent message, its thread, the chart)."""

    def __call__(self, digest: Digest, chart_png: bytes | None, *, chart_name: str) -> tuple[str, str]:
        """Post it; the (channel, ts) of its parent message."""
        ...
