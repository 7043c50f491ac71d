"""NVML metrics on a stand-in NVML: readings folded into windows, no driver means no samples."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from adapters.metrics.nvml import NvmlGpuMetrics, launch_gpu_ids

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


class NVMLError(Exception):
    pass


class FakeNvml:
    """The handful of pynvml calls the adapter makes; utilisation per GPU set by the test."""

    NVMLError = NVMLError

    def __init__(self, gpus: int = 2, buffered: bool = False, broken: bool = False) -> None:
        self.util = [0.0] * gpus
        self.buffered = buffered  # answer nvmlDeviceGetSamples with a burst, else refuse it
        self.broken = broken
        self.inits = 0
        self._ts = 0

    def nvmlInit(self) -> None:  # noqa: N802
        self.inits += 1
        if self.broken:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.util)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int):  # noqa: N802
        return SimpleNamespace(gpu=self.util[handle], memory=0)

    def nvmlDeviceGetSamples(self, handle: int, kind: int, last_seen: int):  # noqa: N802
        if not self.buffered:
            raise NVMLError("Not Supported")
        self._ts += 10
        burst = [SimpleNamespace(timeStamp=self._ts - 1, sampleValue=SimpleNamespace(uiVal=int(self.util[handle]) + 40)),
                 SimpleNamespace(timeStamp=self._ts, sampleValue=SimpleNamespace(uiVal=int(self.util[handle])))]
        return 1, [s for s in burst if s.timeStamp > last_seen]


class Clock:
    def __init__(self) -> None:
        self.current = T0

    def __call__(self) -> datetime:
        return self.current


def test_readings_fold_into_windows_of_their_peak(tmp_path):
    nvml, clock = FakeNvml(), Clock()
    metrics = NvmlGpuMetrics(lambda e, a: [0, 1] if (e, a) == ("exp", 1) else [], nvml=nvml, now=clock)
    for minute in range(1, 11):
        clock.current = T0 + minute * MIN
        nvml.util = [0.0, 60.0 if minute == 7 else 0.0]
        metrics.sample_now()
    found = metrics.samples("exp", 1, T0, T0 + 10 * MIN)
    assert [(s.at, s.max_util) for s in found["0"]] == [(T0 + 5 * MIN, 0.0), (T0 + 10 * MIN, 0.0)]
    assert [(s.at, s.max_util) for s in found["1"]] == [(T0 + 5 * MIN, 0.0), (T0 + 10 * MIN, 60.0)]
    assert metrics.samples("other", 1, T0, T0 + 10 * MIN) == {}


def test_a_window_without_readings_is_missing_not_idle():
    nvml, clock = FakeNvml(gpus=1), Clock()
    metrics = NvmlGpuMetrics(lambda e, a: [0], nvml=nvml, now=clock)
    for minute in (1, 2, 11, 12):  # serve was down from 3 to 10
        clock.current = T0 + minute * MIN
        metrics.sample_now()
    assert [s.at for s in metrics.samples("e", 1, T0, T0 + 15 * MIN)["0"]] == [T0 + 5 * MIN, T0 + 15 * MIN]


def test_buffered_nvml_samples_catch_bursts_between_readings():
    nvml, clock = FakeNvml(gpus=1, buffered=True), Clock()
    metrics = NvmlGpuMetrics(lambda e, a: [0], nvml=nvml, now=clock)
    clock.current = T0 + MIN
    metrics.sample_now()
    assert metrics.samples("e", 1, T0 + MIN, T0 + MIN)["0"][0].max_util == 40.0


def test_old_readings_are_dropped():
    nvml, clock = FakeNvml(gpus=1), Clock()
    metrics = NvmlGpuMetrics(lambda e, a: [0], nvml=nvml, now=clock, keep=timedelta(minutes=30))
    for minute in range(120):
        clock.current = T0 + minute * MIN
        metrics.sample_now()
    assert len(metrics._readings[0]) == 31


def test_without_nvml_there_are_no_samples_and_one_log_line(caplog):
    nvml = FakeNvml(broken=True)
    metrics = NvmlGpuMetrics(lambda e, a: [0], nvml=nvml)
    with caplog.at_level(logging.INFO, logger="adapters.metrics.nvml"):
        for _ in range(3):
            metrics.sample_now()
            assert metrics.samples("e", 1, T0, T0 + 60 * MIN) == {}
    assert nvml.inits == 1 and len(caplog.records) == 1 and not metrics.available


def test_launch_gpu_ids_reads_what_the_local_runner_recorded(tmp_path):
    attempt = tmp_path / "abc123" / "attempt-2"
    attempt.mkdir(parents=True)
    (attempt / "launch.json").write_text(json.dumps({"gpu_ids": [1, 3], "pid": 42}))
    gpu_ids = launch_gpu_ids(tmp_path)
    assert gpu_ids("abc123", 2) == [1, 3]
    assert gpu_ids("abc123", 1) == [] and gpu_ids("../etc", 1) == [] and gpu_ids("", 1) == []
    (attempt / "launch.json").write_text("{not json")
    assert gpu_ids("abc123", 2) == []
