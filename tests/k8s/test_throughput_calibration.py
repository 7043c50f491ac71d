"""The throughput calibration run (benchmarks/throughput/calibrate.py, issue 13) runs in its quick mode
on its own control plane and reports both sides, so it cannot rot; its 10% agreement is not judged here."""
from __future__ import annotations

import re

import pytest

from tests.integration.test_benchmark_smoke import run_benchmark

pytestmark = pytest.mark.slow


def test_calibration_quick_mode_runs_and_reports(k8s_cluster) -> None:  # the fixture: the binaries are built
    out = run_benchmark("benchmarks/throughput/calibrate.py", "--quick", timeout=240)
    assert "scenario: seed 12, 8 experiments" in out
    assert "agreement within 10% on every counted figure:" in out
    assert "expbot's lead thread DIED" not in out
    real = re.search(r"^experiments succeeded\s+(\d+)\s+(\d+)", out, re.M)
    assert real is not None, out
    # The real expbot finished something and decided the scripted failures it met.
    assert int(real.group(2)) > 0, out
    assert re.search(r"^scripted failures decided\s+\d+\s+[1-9]", out, re.M), out
