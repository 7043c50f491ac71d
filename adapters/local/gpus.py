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


def pick_free(total: int, in_use: Collection[int], wanted: int) -> list[int] | None:
    """The `wanted` lowest free GPU indices, or None if not enough are free."""
    free = [i for i in range(total) if i not in in_use]
    return free[:wanted] if len(free) >= wanted else None


def waiting_reason(wanted: int, in_use: int, total: int) -> str:
    """Why an attempt waits for GPUs."""
    return f"waiting for {wanted} free GPUs ({in_use} of {total} in use)"


def fits_reason(wanted: int, total: int) -> str | None:
    """Why an attempt can never start here, or None."""
    if wanted > total:
        return f"needs {wanted} GPUs but this machine has {total} (set EXPBOT_LOCAL_GPUS)"
    return None
