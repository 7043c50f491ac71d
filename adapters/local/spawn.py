"""Starting an attempt's shim: its environment (the attempt contract plus the containment token) and argv."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO

from adapters.local.files import HEARTBEAT_FILE
from adapters.local.shim import FORWARDED, TOKEN_VAR
from core.attempt_env import AttemptPlaces, attempt_env
from core.ports import AttemptLaunch

SHIM = Path(__file__).with_name("shim.py")


def shim_env(launch: AttemptLaunch, adir: Path, checkpoint_dir: Path, gpu_ids: list[int], token: str) -> dict[str, str]:
    """This machine's environment, the env contract (core.attempt_env) with local places, GPUs and the token."""
    places = AttemptPlaces(checkpoint_dir=str(checkpoint_dir), heartbeat_file=str(adir / HEARTBEAT_FILE))
    return {
        **os.environ,
        **attempt_env(launch, places),
        # "" hides every GPU from CUDA, so a 0-GPU attempt cannot grab one by accident.
        "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in gpu_ids),
        # NVML numbers GPUs by PCI bus: make CUDA agree, so idle detection watches the right ones.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        TOKEN_VAR: token,  # every descendant inherits it: how strays are found after the shim died
    }


def spawn_shim(python: str, launch: AttemptLaunch, adir: Path, checkpoint_dir: Path, gpu_ids: list[int],
               token: str, cgroup: str | None, log: IO[bytes], script: Path = SHIM) -> subprocess.Popen:
    """Start the shim (`script`: gang_shim.py for a multi-node attempt) as a new session's leader, output to `log`."""
    env = shim_env(launch, adir, checkpoint_dir, gpu_ids, token)
    # The shim runs by path with -I (isolated), so it works whatever the cwd or PYTHONPATH, and
    # -S: it needs only the standard library, and site-packages' .pth files cost every start.
    argv = [python, "-I", "-S", str(script), str(adir), *(["--cgroup", cgroup] if cgroup else []),
            "--", *launch.spec.command]
    # Blocked until the shim has its handlers: a stop right after submit must not kill the
    # shim before it can record an exit (the child inherits this thread's mask).
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=os.getcwd(), start_new_session=True, close_fds=True,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
