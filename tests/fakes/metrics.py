"""GPU metrics whose values each test sets: utilisation and DCGM's last Xid per GPU over time."""
from __future__ import annotations

from datetime import datetime, timedelta

from core.idle import Sample
from core.metrics import MetricsUnavailable, XidError, xid_rises


class FakeGpuMetrics:
    """core.metrics.GpuMetrics: `set(exp_id, gpu, util, start=..)` records a level from `start` on."""

    def __init__(self, window: timedelta = timedelta(minutes=5)) -> None:
        self.window = window
        self.levels: dict[str, dict[str, list[tuple[datetime, float | None]]]] = {}
        self.failing: Exception | None = None  # raised by samples() while set
        self.calls: list[tuple[str, int, datetime, datetime]] = []
        self.xids: dict[tuple[str, int], dict[str, list[tuple[datetime, float]]]] = {}
        self.xid_calls: list[tuple[str, int, datetime, datetime]] = []

    def set(self, experiment_id: str, gpu: str, util: float | None, start: datetime) -> None:
        """From `start` on, `gpu` runs at `util` percent (None: no data)."""
        self.levels.setdefault(experiment_id, {}).setdefault(gpu, []).append((start, util))

    def set_xid(self, experiment_id: str, attempt: int, gpu: str, code: int, at: datetime) -> None:
        """DCGM_FI_DEV_XID_ERRORS of the attempt's `gpu` reads `code` at `at` (as a scrape would)."""
        self.xids.setdefault((experiment_id, attempt), {}).setdefault(gpu, []).append((at, float(code)))

    def xid_errors(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> list[XidError]:
        """The rises among the readings set in [since, until], as the Prometheus adapter finds them."""
        self.xid_calls.append((experiment_id, attempt, since, until))
        if self.failing is not None:
            raise self.failing
        found = [e for gpu, readings in self.xids.get((experiment_id, attempt), {}).items()
                 for e in xid_rises(gpu, [r for r in readings if since <= r[0] <= until])]
        return sorted(found, key=lambda e: e.at)

    def fail(self, message: str = "Prometheus is down") -> None:
        """Make every samples() call raise MetricsUnavailable until `failing` is cleared."""
        self.failing = MetricsUnavailable(message)

    def samples(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> dict[str, list[Sample]]:
        """One sample per window ending at since + k*window <= until: the max level set inside it."""
        self.calls.append((experiment_id, attempt, since, until))
        if self.failing is not None:
            raise self.failing
        found: dict[str, list[Sample]] = {}
        for gpu, changes in self.levels.get(experiment_id, {}).items():
            samples = []
            end = since
            while end <= until:
                peak = self._peak(changes, end - self.window, end)
                if peak is not None:
                    samples.append(Sample(gpu, end, peak))
                end += self.window
            if samples:
                found[gpu] = samples
        return found

    @staticmethod
    def _peak(changes: list[tuple[datetime, float | None]], start: datetime, end: datetime) -> float | None:
        """Max level in (start, end]; None when any part of it has no data."""
        changes = sorted(changes, key=lambda c: c[0])
        levels: list[float | None] = []
        current: float | None = None
        for at, util in changes:
            if at <= start:
                current = util
            elif at <= end:
                levels.append(util)
        levels.insert(0, current)
        if any(level is None for level in levels):
            return None
        return max(level for level in levels if level is not None)
