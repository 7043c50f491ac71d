"""The GPU-metrics port: per-GPU utilisation samples of one attempt (Prometheus/DCGM or NVML)."""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from core.errors import ExpbotError
from core.idle import Sample


class MetricsUnavailable(ExpbotError):
    """The metrics source could not answer (HTTP error, bad reply, no driver); the caller logs it."""


class GpuMetrics(Protocol):
    def samples(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> dict[str, list[Sample]]:
        """Per GPU id, one Sample per sample window ending in [since, until] (max utilisation in it).

        A GPU or window with no data is left out: missing data means unknown, never idle.
        Raises MetricsUnavailable when the source cannot be asked.
        """
        ...
