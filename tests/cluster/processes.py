"""Child processes of the test control plane: free loopback ports, checked commands, supervised components.

Components get PR_SET_PDEATHSIG=SIGKILL (via ``setpriv``) so they die with the Python process that
started them: start them from a thread that outlives the cluster (normally the main thread).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class ControlPlaneError(RuntimeError):
    """The control plane could not start (the message includes the tail of the process logs)."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so none is returned twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def run_checked(cmd: list[str], cwd: Path) -> None:
    """Run cmd in cwd to completion; raise ControlPlaneError with its stderr when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")


@dataclass
class Process:
    """One component: its command line, its log file (appended to across restarts) and its running Popen."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        """Start it in its own session (process group), output appended to the log."""
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.starts + 1} at {time.strftime('%H:%M:%S')}: {' '.join(self.args)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                prefix + self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **self.env},
            )
        self.starts += 1

    def alive(self) -> bool:
        """Whether it was started and has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        """Send sig to its process group (nothing when it is gone)."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Send sig, wait up to timeout, then SIGKILL the process group. Idempotent."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(10)
        # Whatever else is left in its process group (there should be nothing).
        self.signal_group(signal.SIGKILL)
        self.popen = None

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log ("" before the first start)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
