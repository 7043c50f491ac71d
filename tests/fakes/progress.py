"""In-memory progress store: the fake of adapters.db.progress.SqlProgressStore (same contract tests)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from core.progress import ProgressReport


@dataclass
class _Progress:
    heartbeat_at: datetime
    checkpoint: str | None = None
    checkpoint_at: datetime | None = None
    step: int | None = None


class FakeProgressStore:
    """core.progress.ProgressStore in a dict keyed by (experiment_id, attempt); `reports` keeps every one."""

    def __init__(self) -> None:
        self.attempts: dict[tuple[str, int], _Progress] = {}
        self.reports: list[ProgressReport] = []
        self._lock = threading.Lock()

    def record(self, report: ProgressReport) -> None:
        """Store a report; an older one never overwrites what a newer one stored."""
        if report.at.tzinfo is None:  # as the SQL store: naive times would be stored ambiguously
            raise ValueError(f"naive datetime {report.at!r}: expbot stores timezone-aware times only")
        when = report.at.astimezone(timezone.utc)  # reads back in UTC, as from the database
        with self._lock:
            self.reports.append(report)
            row = self.attempts.setdefault((report.experiment_id, report.attempt), _Progress(heartbeat_at=when))
            if when >= row.heartbeat_at:
                row.heartbeat_at = when
                if report.step is not None:
                    row.step = report.step
            if report.checkpoint is not None and (row.checkpoint_at is None or when >= row.checkpoint_at):
                row.checkpoint, row.checkpoint_at = report.checkpoint, when

    def latest_checkpoint(self, experiment_id: str) -> str | None:
        """The newest checkpoint reported by any attempt of the experiment (ties: the higher attempt)."""
        with self._lock:
            candidates = [
                (row.checkpoint_at, attempt, row.checkpoint)
                for (eid, attempt), row in self.attempts.items()
                if eid == experiment_id and row.checkpoint is not None
            ]
        return max(candidates)[2] if candidates else None

    def heartbeats(self, since: datetime) -> dict[tuple[str, int], datetime]:
        """(experiment_id, attempt) -> last report time, for every attempt heard from at or after `since`."""
        with self._lock:
            return {key: row.heartbeat_at for key, row in self.attempts.items() if row.heartbeat_at >= since}
