"""The research-throughput benchmark's --quick mode, as CI runs it: so the benchmark cannot rot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_throughput_benchmark_s_quick_mode_prints_every_arm_and_draws_the_chart(tmp_path: Path) -> None:
    chart = tmp_path / "throughput.png"
    run = subprocess.run([sys.executable, "benchmarks/throughput/run.py", "--quick", "--chart", str(chart)],
                         cwd=REPO, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    for arm in ("k8s Job", "Job+podFailurePolicy", "SkyPilot managed", "expbot", "expbot -ckpt discovery",
                "expbot -stall detection", "expbot -catalog"):
        assert f"\n{arm} " in run.stdout
    assert "medians over seeds 1..3" in run.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
