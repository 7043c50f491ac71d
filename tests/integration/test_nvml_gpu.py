"""NVML on a real NVIDIA GPU with the local runner and the toy workload; skipped where there is none."""
from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.local.runner import LocalRunner
from adapters.metrics.nvml import NvmlGpuMetrics, launch_gpu_ids
from core.ports import AttemptLaunch
from core.spec import ExperimentSpec

TOY = str(Path(__file__).resolve().parents[2] / "examples" / "train_toy.py")


def _gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def test_nvml_reports_the_gpu_the_local_runner_handed_out(tmp_path):
    if _gpu_count() == 0:
        pytest.skip("NVML unavailable: no NVIDIA driver or GPU on this machine")
    runner = LocalRunner(tmp_path / "runs", 1, SystemClock())
    spec = ExperimentSpec(name="toy", command=(sys.executable, TOY, "--steps", "200"), image="local", gpus=1)
    runner.submit(AttemptLaunch("nvmltoy", "toy", 1, spec, "alice", None, timedelta(hours=1)))
    metrics = NvmlGpuMetrics(launch_gpu_ids(runner.root), window=timedelta(seconds=1))
    since = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        for _ in range(4):
            metrics.sample_now()
            time.sleep(0.5)
        found = metrics.samples("nvmltoy", 1, since, datetime.now(timezone.utc))
    finally:
        runner.stop("nvmltoy", 1, timedelta(0))
    assert list(found) == ["0"]  # the runner's first GPU, as recorded in launch.json
    assert all(0.0 <= s.max_util <= 100.0 for s in found["0"])
