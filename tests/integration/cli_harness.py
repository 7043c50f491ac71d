"""Drive the real `expbot` command line (launch/ls/status/stop and a `serve` process) from tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from tests.polling import wait_for  # noqa: F401  (re-exported for the CLI tests)

REPO = Path(__file__).resolve().parents[2]
# The installed console script, exactly as a user runs it.
_SCRIPT = Path(sys.executable).with_name("expbot")
EXPBOT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from bot.cli import main; main()"]


class Expbot:
    """One expbot installation (a data directory) and the processes that use it."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.env = os.environ | {
            "EXPBOT_DATA_DIR": str(data_dir),
            "EXPBOT_LOCAL_GPUS": "0",
            "EXPBOT_BACKOFF_BASE_SECONDS": "0.2",
            "EXPBOT_BACKOFF_CAP_SECONDS": "1",
            "EXPBOT_RESYNC_INTERVAL_SECONDS": "0.3",
            "EXPBOT_STOP_GRACE_SECONDS": "3",
            "EXPBOT_RELAY_INTERVAL_SECONDS": "0.3",
            "EXPBOT_USER": "ana",
            "EXPBOT_HTTP_PORT": "0",  # serve always listens (probes, /metrics): any free port, never a clash
        } | settings
        self.serve_proc: subprocess.Popen | None = None
        # Run in every child before exec (e.g. to give up root's power over file modes).
        self.preexec_fn: Callable[[], None] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one `expbot ...` command to completion."""
        proc = subprocess.run([*EXPBOT, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60,
                              preexec_fn=self.preexec_fn)
        if check and proc.returncode != 0:
            raise AssertionError(f"expbot {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def status(self, name: str) -> dict[str, Any]:
        """`expbot status NAME --json`, parsed."""
        return json.loads(self.cli("status", name, "--json").stdout)

    def serve(self) -> subprocess.Popen:
        """Start `expbot serve` in the background."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / f"serve-{time.monotonic_ns()}.log", "w")
        self.serve_proc = subprocess.Popen(
            [*EXPBOT, "serve"], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        return self.serve_proc

    def kill_serve(self, sig: int = signal.SIGKILL) -> None:
        """End the serve process (SIGKILL by default: a crash, no clean shutdown)."""
        if self.serve_proc and self.serve_proc.poll() is None:
            self.serve_proc.send_signal(sig)
            self.serve_proc.wait(timeout=30)

    def attempt_pid(self, experiment_id: str, attempt: int) -> int:
        """The pid (and process group) of an attempt started by the local runner."""
        launch = json.loads((self.data_dir / "runs" / experiment_id / f"attempt-{attempt}" / "launch.json").read_text())
        return int(launch["pid"])

    def serve_logs(self) -> str:
        """Everything every serve process printed."""
        return "\n".join(p.read_text() for p in sorted(self.data_dir.glob("serve-*.log")))
