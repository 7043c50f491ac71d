"""The GPU-metrics port: per-GPU utilisation samples of one attempt (Prometheus/DCGM or NVML), and the
Xid errors its GPUs reported (DCGM_FI_DEV_XID_ERRORS), the node evidence for a failed attempt."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.errors import ExpbotError
from core.idle import Sample


class MetricsUnavailable(ExpbotError):
    """The metrics source could not answer (HTTP error, bad reply, no driver); the caller logs it."""


@dataclass(frozen=True)
class XidError:
    """An Xid error one GPU of the attempt reported while it ran."""

    gpu: str  # the GPU's index (or UUID when the exporter gives no index)
    code: int
    at: datetime
    node: str = ""  # the exporter's Hostname, when it gives one

    def line(self) -> str:
        """The evidence as a log line, which the catalog's DCGM signature matches."""
        where = f"GPU {self.gpu} of {self.node}" if self.node else f"GPU {self.gpu}"
        return f"DCGM reported Xid {self.code} on {where} during the attempt"


def xid_rises(gpu: str, readings: Iterable[tuple[datetime, float]], node: str = "") -> list[XidError]:
    """The readings of DCGM_FI_DEV_XID_ERRORS (the last Xid a GPU saw) that show a new, non-zero Xid.

    The first reading is the baseline, not a rise: a GPU keeps reporting the last Xid it ever saw,
    which may be older than this attempt.
    """
    rises: list[XidError] = []
    previous: int | None = None
    for at, value in sorted(readings, key=lambda r: r[0]):
        if value != value:  # NaN: no reading
            continue
        code = int(value)
        if previous is not None and code != 0 and code != previous:
            rises.append(XidError(gpu, code, at, node))
        previous = code
    return rises


class XidSource(Protocol):
    def xid_errors(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> list[XidError]:
        """The Xid errors the attempt's GPUs reported in [since, until], oldest first.

        Raises MetricsUnavailable when the source cannot be asked.
        """
        ...


class GpuMetrics(XidSource, Protocol):
    def samples(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> dict[str, list[Sample]]:
        """Per GPU id, one Sample per sample window ending in [since, until] (max utilisation in it).

        A GPU or window with no data is left out: missing data means unknown, never idle.
        Raises MetricsUnavailable when the source cannot be asked.
        """
        ...
