"""Local runner (#12): a workload that prints a hardware signature and exits 1 is restarted as
infrastructure on another GPU index, while one is free."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adapters.local.gpus import avoided_gpus, node_name, pick_free
from tests.integration.cli_harness import Expbot, wait_for

pytestmark = pytest.mark.slow

# Attempt 1 dies the way a GPU that fell off the bus kills a job; later attempts succeed.
FLAKY_GPU = r"""
import os, sys
print("CUDA_VISIBLE_DEVICES=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
if os.environ["EXPBOT_ATTEMPT"] == "1":
    print("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.", flush=True)
    print("RuntimeError: CUDA error: unknown error", flush=True)
    sys.exit(1)
"""


def test_a_hardware_fault_restarts_on_another_gpu_without_spending_max_restarts(tmp_path: Path) -> None:
    expbot = Expbot(tmp_path / "data", EXPBOT_LOCAL_GPUS="2")
    expbot.serve()
    try:
        expbot.cli("launch", "flaky", "--gpus", "1", "--max-restarts", "0", "--", sys.executable, "-c", FLAKY_GPU)
        done = wait_for(lambda: (s := expbot.status("flaky"))["state"] in ("SUCCEEDED", "FAILED") and s, 60,
                        "flaky to finish")
    finally:
        expbot.kill_serve()
    assert done["state"] == "SUCCEEDED", done["reason"]
    first, second = done["attempts"]
    assert first["failure_class"] == "hardware" and "Xid 79" in first["reason"]
    assert (first["node"], second["node"]) == ("gpu0", "gpu1")
    assert done["restarts"] == {"user": 0, "infra": 1, "uncounted": 0}
    assert "CUDA_VISIBLE_DEVICES=1" in expbot.cli("logs", "flaky", "--attempt", "2").stdout


def test_gpus_to_avoid_are_skipped_while_enough_others_exist() -> None:
    assert pick_free(4, in_use=set(), wanted=1, avoid={0}) == [1]
    assert pick_free(2, in_use={1}, wanted=1, avoid={0}) is None  # wait for the good one
    assert pick_free(1, in_use=set(), wanted=1, avoid={0}) == [0]  # no other GPU exists at all
    assert pick_free(4, in_use={3}, wanted=2, avoid={0}) == [1, 2]
    assert avoided_gpus([node_name([0, 1]), node_name([3]), "some-k8s-node"]) == {0, 1, 3}
    assert node_name([]) is None
