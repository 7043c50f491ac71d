"""GPU utilisation of this machine from NVML (nvidia-ml-py), for the local runner.

`sample_now()` (called by a job every minute) reads every GPU's utilisation into an in-memory
ring; `samples()` folds the readings into windows. NVML keeps a short buffer of utilisation
samples per GPU (several a second); reading all of them since the previous call keeps short
bursts of work from slipping between two readings. Without a driver (no NVIDIA GPU) every answer
is empty: unknown, never idle.

GPU ids are NVML indices. The local runner hands GPUs out by index in CUDA_VISIBLE_DEVICES; they
are the same GPUs only when CUDA enumerates in PCI order (CUDA_DEVICE_ORDER=PCI_BUS_ID).
"""
from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from core.idle import Sample
from core.metrics import XidError

log = logging.getLogger(__name__)

GpuIdsFor = Callable[[str, int], list[int]]  # (experiment_id, attempt) -> NVML indices
_UNSIGNED_INT = 1  # NVML_VALUE_TYPE_UNSIGNED_INT
_UTILIZATION_SAMPLES = 1  # NVML_GPU_UTILIZATION_SAMPLES


def launch_gpu_ids(runs_root: Path) -> GpuIdsFor:
    """GPU ids the local runner recorded in <root>/<experiment_id>/attempt-<n>/launch.json (`gpu_ids`)."""
    root = Path(runs_root)

    def gpu_ids(experiment_id: str, attempt: int) -> list[int]:
        if not experiment_id or "/" in experiment_id or experiment_id in (".", ".."):
            return []
        path = root / experiment_id / f"attempt-{int(attempt)}" / "launch.json"
        try:
            launch = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [int(i) for i in launch.get("gpu_ids") or []]

    return gpu_ids


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class NvmlGpuMetrics:
    """core.metrics.GpuMetrics over NVML readings kept in memory (lost on restart: unknown, not idle)."""

    def __init__(
        self,
        gpu_ids_for: GpuIdsFor,
        *,
        window: timedelta = timedelta(minutes=5),
        keep: timedelta = timedelta(hours=48),
        now: Callable[[], datetime] = _utc_now,
        nvml: Any = None,
    ) -> None:
        self.gpu_ids_for = gpu_ids_for
        self.window = window
        self.keep = keep
        self.now = now
        self._nvml = nvml  # pynvml, or a stand-in in tests; imported on first use
        self._ready: bool | None = None  # None: not tried yet
        self._lock = threading.Lock()
        self._readings: dict[int, deque[tuple[datetime, float]]] = {}
        self._last_seen: dict[int, int] = {}  # NVML sample timestamp (µs) read last, per GPU

    @property
    def available(self) -> bool:
        """Whether NVML could be initialised (tried once)."""
        return self._init()

    def sample_now(self) -> None:
        """Read every GPU's utilisation since the previous call into the ring."""
        if not self._init():
            return
        nvml, now = self._nvml, self.now()
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as e:
            log.warning("NVML could not count GPUs: %s", e)
            return
        with self._lock:
            for index in range(count):
                try:
                    util = self._read(index)
                except nvml.NVMLError as e:
                    log.warning("NVML could not read GPU %d: %s", index, e)
                    continue
                ring = self._readings.setdefault(index, deque())
                ring.append((now, util))
                while ring and ring[0][0] < now - self.keep:
                    ring.popleft()

    def samples(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> dict[str, list[Sample]]:
        """Per GPU of the attempt, the max reading of each window ending at since + k*window <= until."""
        if not self._init():
            return {}
        found: dict[str, list[Sample]] = {}
        with self._lock:
            for index in self.gpu_ids_for(experiment_id, attempt):
                # Window k covers (since + (k-1)*window, since + k*window]; a window with no
                # reading is left out: missing, not idle.
                peaks: dict[int, float] = {}
                for at, util in self._readings.get(index, ()):
                    if since - self.window < at <= until:
                        k = math.ceil((at - since) / self.window)
                        if since + k * self.window <= until:
                            peaks[k] = max(util, peaks.get(k, util))
                if peaks:
                    found[str(index)] = [Sample(str(index), since + k * self.window, peaks[k]) for k in sorted(peaks)]
        return found

    def xid_errors(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> list[XidError]:
        """No Xid evidence from here yet: NVML's Xid events are not read, so failures keep their log evidence."""
        return []

    def _read(self, index: int) -> float:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        try:
            value_type, buffered = nvml.nvmlDeviceGetSamples(handle, _UTILIZATION_SAMPLES, self._last_seen.get(index, 0))
        except nvml.NVMLError:
            buffered, value_type = [], None  # not supported on this GPU, or nothing new
        if buffered and value_type == _UNSIGNED_INT:
            self._last_seen[index] = max(s.timeStamp for s in buffered)
            return float(max(s.sampleValue.uiVal for s in buffered))
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def _init(self) -> bool:
        if self._ready is not None:
            return self._ready
        with self._lock:
            if self._ready is None:
                try:
                    if self._nvml is None:
                        import pynvml

                        self._nvml = pynvml
                    self._nvml.nvmlInit()
                    self._ready = True
                except Exception as e:  # no library, no driver: say it once, then stay quiet
                    log.info("NVML unavailable (%s): local GPU utilisation is unknown, nothing counts as idle", e)
                    self._ready = False
        return bool(self._ready)
