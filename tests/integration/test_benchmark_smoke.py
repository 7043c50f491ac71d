"""Every benchmark runs in a quick mode in CI, so none can silently rot (the figures are not judged)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.cli_harness import REPO

pytestmark = pytest.mark.slow


def run_benchmark(*args: str, timeout: float = 300) -> str:
    """Run one benchmark to its report; its output. A missed target (exit 1 after the report) is not
    a broken benchmark: on a loaded CI machine the figures are not judged here."""
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    broken = done.returncode not in (0, 1) or "Traceback" in done.stderr
    assert not broken, f"{args[0]} broke ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_ack_latency_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/ack_latency.py", "--smoke")
    assert "ack latency: p50" in out and "launches stored after the run: 5/5" in out
    assert "full collections in serve while requests came in" in out and "target p99 under 50 ms" in out


def test_digest_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/digest.py", "--experiments", "300", "--db", "sqlite")
    assert "build_digest_data" in out and "median" in out


def test_cli_latency_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/cli_latency.py", "--smoke")
    assert "seeded 20 experiments" in out
    for command in ("ls", "status NAME", "--help"):
        assert f"expbot {command}" in out and "target 250 ms" in out


def test_metrics_scrape_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/metrics_scrape.py", "--smoke")
    assert "one scrape of the store metrics" in out and "median" in out and "target 1000 ms" in out
