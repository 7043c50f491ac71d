"""Where the control plane's binaries are: tests/cluster/build.sh's cached output, or $EXPBOT_TESTBED_BIN."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from tests.cluster.processes import ControlPlaneError


def default_bin_dir(repo_root: Path | None = None) -> Path:
    """Run tests/cluster/build.sh (a no-op when the cached binaries exist) and return its bin dir."""
    env_bin = os.environ.get("EXPBOT_TESTBED_BIN")
    if env_bin:
        return Path(env_bin)
    script = (repo_root or Path(__file__).resolve().parents[2]) / "tests" / "cluster" / "build.sh"
    timeout = float(os.environ.get("EXPBOT_TESTBED_BUILD_TIMEOUT", "3600"))
    # Its own process group, so that an interrupted build (Ctrl-C, pytest-timeout) leaves no `go build` behind.
    proc = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        tail = "\n".join(stderr.splitlines()[-20:])
        raise ControlPlaneError(f"{script} failed ({proc.returncode}):\n{tail}")
    lines = stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{script} printed no bin dir")
    return Path(lines[-1])
