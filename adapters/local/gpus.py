"""Local GPU bookkeeping: how many there are, which to hand out, and what to say when none are free."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path


def detect_gpu_count() -> int:
    """Number of NVIDIA GPUs on this machine (0 when there is no driver)."""
    proc_dir = Path("/proc/driver/nvidia/gpus")
    if proc_dir.is_dir():
        return sum(1 for _ in proc_dir.iterdir())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def pick_free(total: int, in_use: Collection[int], wanted: int, avoid: Collection[int] = ()) -> list[int] | None:
    """The `wanted` lowest free GPU indices, or None if not enough are free.

    GPUs in `avoid` (where earlier attempts hit hardware faults) are not handed out while the
    machine has enough others, even busy ones: the attempt waits for a good GPU rather than land on
    a bad one. With too few others they are used as any GPU.
    """
    if total - len(set(avoid) & set(range(total))) >= wanted:
        in_use = set(in_use) | set(avoid)
    free = [i for i in range(total) if i not in in_use]
    return free[:wanted] if len(free) >= wanted else None


def node_name(gpu_ids: Collection[int]) -> str | None:
    """Where a local attempt runs, as attempts record it: "gpu0,gpu1" (None without GPUs)."""
    return ",".join(f"gpu{i}" for i in sorted(gpu_ids)) or None


def avoided_gpus(nodes: Collection[str]) -> set[int]:
    """The GPU indexes named by node_name()s, e.g. {"gpu0,gpu1", "gpu3"} -> {0, 1, 3}."""
    found = set()
    for node in nodes:
        for part in node.split(","):
            if part.startswith("gpu") and part[3:].isdigit():
                found.add(int(part[3:]))
    return found


def waiting_reason(wanted: int, in_use: int, total: int) -> str:
    """Why an attempt waits for GPUs."""
    return f"waiting for {wanted} free {_gpus(wanted)} ({in_use} of {total} in use)"


def fits_reason(wanted: int, total: int) -> str | None:
    """Why an attempt can never start here, or None."""
    if wanted > total:
        return f"needs {wanted} {_gpus(wanted)} but this machine has {total} (set EXPBOT_LOCAL_GPUS)"
    return None


def _gpus(count: int) -> str:
    return "GPU" if count == 1 else "GPUs"
