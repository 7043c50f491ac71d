"""The Kubernetes benchmarks run in a quick mode in CI (each on its own control plane), so none can rot."""
from __future__ import annotations

import pytest

from tests.integration.test_benchmark_smoke import run_benchmark

pytestmark = pytest.mark.slow


def test_restart_latency_benchmark_runs(k8s_cluster) -> None:  # the fixture: the binaries are built
    out = run_benchmark("benchmarks/k8s_restart_latency.py", "--failures", "3", "--experiments", "1",
                        "--max-restarts", "5", "--timeout", "120")
    assert "restarts measured: 3" in out and "pod failed -> next attempt's Job ADDED" in out


def test_scale_benchmark_runs(k8s_cluster) -> None:
    out = run_benchmark("benchmarks/k8s_scale.py", "--experiments", "20", "--run-seconds", "1", "--resync", "5",
                        "--timeout", "120")
    assert "all succeeded: met" in out and "writes <= 5/lifecycle" in out


def test_gang_restart_benchmark_runs(k8s_cluster) -> None:
    out = run_benchmark("benchmarks/k8s_restart_latency.py", "--gang", "4", "--failures", "2", "--experiments", "1",
                        "--max-restarts", "5", "--timeout", "120")
    assert "restarts measured: 2" in out and "pod failed -> every pod of the next gang created" in out
