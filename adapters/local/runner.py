"""The embedded default backend: each attempt is a local process group, its state kept on disk.

Layout under root (so a new LocalRunner, or the CLI in another process, sees everything):
  <experiment_id>/checkpoints/            EXPBOT_CHECKPOINT_DIR, kept across attempts
  <experiment_id>/attempt-<n>/launch.json pid, /proc start time, GPUs, started_at
  <experiment_id>/attempt-<n>/output.log  stdout + stderr
  <experiment_id>/attempt-<n>/exit.json   written by the shim when the command ends
  <experiment_id>/attempt-<n>/heartbeat   EXPBOT_HEARTBEAT_FILE, touched by the command if it likes
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from adapters.local import procs
from adapters.local.gpus import fits_reason, pick_free, waiting_reason
from adapters.local.shim import EXIT_FILE, FORWARDED, STOP_MARKER, write_json_atomic
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus, Clock, SubmitResult
from core.spec import ExperimentSpec

SHIM = Path(__file__).with_name("shim.py")
LAUNCH_FILE = "launch.json"
LOG_FILE = "output.log"
HEARTBEAT_FILE = "heartbeat"
TAIL_BYTES = 1 << 20
_POLL = 0.05
_KILL_WAIT = 5.0  # how long a SIGKILLed group may take to disappear


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class LocalRunner:
    """ClusterBackend running attempts as local processes, with `gpus` GPUs handed out by index."""

    def __init__(self, root: Path, gpus: int, clock: Clock, python: str = sys.executable) -> None:
        self.root = Path(root).resolve()  # absolute: EXPBOT_CHECKPOINT_DIR must not depend on cwd
        self.gpus = gpus
        self.clock = clock
        self.python = python
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._children: dict[tuple[str, int], subprocess.Popen] = {}

    # --- paths -------------------------------------------------------------------------------
    def experiment_dir(self, experiment_id: str) -> Path:
        """Where everything of one experiment lives."""
        if not experiment_id or experiment_id in (".", "..") or "/" in experiment_id or "\0" in experiment_id:
            raise ValueError(f"unusable experiment id: {experiment_id!r}")
        return self.root / experiment_id

    def checkpoint_dir(self, experiment_id: str) -> Path:
        """The experiment's checkpoint directory (EXPBOT_CHECKPOINT_DIR), shared by its attempts."""
        return self.experiment_dir(experiment_id) / "checkpoints"

    def attempt_dir(self, experiment_id: str, attempt: int) -> Path:
        """The directory holding one attempt's launch record, log and exit record."""
        return self.experiment_dir(experiment_id) / f"attempt-{int(attempt)}"

    # --- ClusterBackend ----------------------------------------------------------------------
    def check_fits(self, spec: ExperimentSpec) -> str | None:
        """Why this spec can never run on this machine, or None."""
        return fits_reason(spec.gpus, self.gpus)

    def submit(self, launch: AttemptLaunch) -> SubmitResult:
        """Start the attempt unless it already exists; wait (create nothing) when GPUs are short."""
        spec = launch.spec
        if (why := self.check_fits(spec)) is not None:
            return SubmitResult(started=False, reason=why)
        adir = self.attempt_dir(launch.experiment_id, launch.attempt)
        with self._exclusive():
            if (adir / LAUNCH_FILE).exists():
                return SubmitResult(started=True)
            gpu_ids: list[int] = []
            if spec.gpus > 0:
                in_use = self._gpus_in_use()
                picked = pick_free(self.gpus, in_use, spec.gpus)
                if picked is None:
                    return SubmitResult(False, waiting_reason(spec.gpus, len(in_use), self.gpus))
                gpu_ids = picked
            self.checkpoint_dir(launch.experiment_id).mkdir(parents=True, exist_ok=True)
            adir.mkdir(parents=True, exist_ok=True)
            proc = self._spawn(launch, adir, gpu_ids)
            # Read before anyone can reap it: an unreaped process keeps its /proc entry.
            started = procs.start_time(proc.pid)
            write_json_atomic(adir / LAUNCH_FILE, {
                "experiment_id": launch.experiment_id,
                "experiment_name": launch.experiment_name,
                "attempt": launch.attempt,
                "owner": launch.owner,
                "command": list(spec.command),
                "resume_from": launch.resume_from or "",
                "pid": proc.pid,
                "pgid": proc.pid,  # start_new_session: the shim leads its own group
                "start_time": started,
                "gpu_ids": gpu_ids,
                "started_at": self.clock.now().isoformat(),
            })
            key = (launch.experiment_id, launch.attempt)
            self._children[key] = proc
            threading.Thread(target=self._reap, args=(key, proc), daemon=True,
                             name=f"expbot-reap-{proc.pid}").start()
        return SubmitResult(started=True)

    def status(self, experiment_id: str, attempt: int) -> AttemptStatus | None:
        """RUNNING while alive, EXITED once exit.json exists, LOST if it vanished without one."""
        adir = self.attempt_dir(experiment_id, attempt)
        launch = _read_json(adir / LAUNCH_FILE)
        if launch is None:
            return None
        common = {
            "started_at": datetime.fromisoformat(launch["started_at"]),
            "last_progress_at": self._last_progress(experiment_id, adir),
        }
        ended = _read_json(adir / EXIT_FILE)
        if ended is None:
            if self._alive(launch):
                return AttemptStatus(AttemptPhase.RUNNING, **common)
            ended = _read_json(adir / EXIT_FILE)  # it may have ended between the two looks
        if ended is None:
            return AttemptStatus(AttemptPhase.LOST, reason="process vanished", infra=True, **common)
        return AttemptStatus(
            AttemptPhase.EXITED,
            exit_code=int(ended["exit_code"]),
            reason=ended.get("reason", ""),
            ended_at=datetime.fromisoformat(ended["ended_at"]),
            **common,
        )

    def stop(self, experiment_id: str, attempt: int, grace: timedelta) -> None:
        """SIGTERM the attempt's process group, SIGKILL it if still there after `grace`."""
        adir = self.attempt_dir(experiment_id, attempt)
        launch = _read_json(adir / LAUNCH_FILE)
        if launch is None or (adir / EXIT_FILE).exists() or not self._alive(launch):
            return
        (adir / STOP_MARKER).touch()
        self._signal_group(launch, signal.SIGTERM)
        if self._wait_dead(launch, max(grace.total_seconds(), 0.0)):
            self._record_stop(adir, signal.SIGTERM, "terminated by SIGTERM")
            return
        self._signal_group(launch, signal.SIGKILL)
        if self._wait_dead(launch, _KILL_WAIT):
            self._record_stop(adir, signal.SIGKILL,
                              f"killed by SIGKILL after a {grace.total_seconds():g}s stop grace")

    def latest_checkpoint(self, experiment_id: str, pattern: str) -> str | None:
        """Absolute path of the newest file matching the glob in the checkpoint dir, or None."""
        ckdir = self.checkpoint_dir(experiment_id)
        if not ckdir.is_dir():
            return None
        try:
            matches = list(ckdir.glob(pattern))
        except (ValueError, NotImplementedError) as e:
            raise ValueError(f"bad checkpoint pattern {pattern!r}: {e}") from e
        best: tuple[tuple[int, str], Path] | None = None
        for path in matches:
            rel = path.relative_to(ckdir)
            # Hidden parts also catch "..": a pattern cannot reach outside the directory.
            if path.name.endswith(".tmp") or any(part.startswith(".") for part in rel.parts):
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # rotated away meanwhile
            if not stat.S_ISREG(st.st_mode):
                continue
            key = (st.st_mtime_ns, rel.as_posix())
            if best is None or key > best[0]:
                best = (key, path)
        return str(best[1]) if best else None

    def logs(self, experiment_id: str, attempt: int, tail_lines: int | None = None) -> str:
        """The attempt's output.log (its last `tail_lines` lines if given; "" if none)."""
        path = self.attempt_dir(experiment_id, attempt) / LOG_FILE
        if tail_lines is not None and tail_lines <= 0:
            return ""
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return ""
        with f:
            if tail_lines is None:
                return f.read().decode("utf-8", "replace")
            start = max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES)
            f.seek(start)
            data = f.read()
        if start > 0:
            data = data[data.find(b"\n") + 1:]  # drop the partial first line
        text = data.decode("utf-8", "replace")
        # Split on "\n" only: progress bars redraw with "\r" and are not separate lines.
        trailing = text.endswith("\n")
        lines = (text[:-1] if trailing else text).split("\n")
        return "\n".join(lines[-tail_lines:]) + ("\n" if trailing else "")

    def release(self, experiment_id: str) -> None:
        """Nothing to free: checkpoints stay in the experiment's directory for the researcher."""

    def wait_for_change(self, timeout: float) -> None:
        """Block until a process this runner started exits, or `timeout` seconds pass (changes unnamed)."""
        if self._changed.wait(timeout):
            self._changed.clear()

    def wake(self, experiment_id: str) -> None:
        """End a wait_for_change now (every experiment is looked at: this runner names no changes)."""
        self._changed.set()

    # --- internals ---------------------------------------------------------------------------
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        # Threads of this process and other processes (CLI next to serve) may submit at once.
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".lock", "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _gpus_in_use(self) -> set[int]:
        # From the filesystem, not memory: attempts started before a restart still hold GPUs.
        used: set[int] = set()
        for launch_file in self.root.glob(f"*/attempt-*/{LAUNCH_FILE}"):
            launch = _read_json(launch_file)
            if not launch or not launch.get("gpu_ids") or (launch_file.parent / EXIT_FILE).exists():
                continue
            if self._alive(launch):
                used.update(launch["gpu_ids"])
        return used

    def _spawn(self, launch: AttemptLaunch, adir: Path, gpu_ids: list[int]) -> subprocess.Popen:
        spec = launch.spec
        env = {
            **os.environ,
            **spec.env,
            "EXPBOT_EXPERIMENT": launch.experiment_name,
            "EXPBOT_EXPERIMENT_ID": launch.experiment_id,
            "EXPBOT_ATTEMPT": str(launch.attempt),
            "EXPBOT_CHECKPOINT_DIR": str(self.checkpoint_dir(launch.experiment_id)),
            "EXPBOT_RESUME_FROM": launch.resume_from or "",
            "EXPBOT_HEARTBEAT_FILE": str(adir / HEARTBEAT_FILE),
            # "" hides every GPU from CUDA, so a 0-GPU attempt cannot grab one by accident.
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in gpu_ids),
            # NVML numbers GPUs by PCI bus: make CUDA agree, so idle detection watches the right ones.
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "PYTHONUNBUFFERED": "1",
        }
        # The shim runs by path with -I (isolated), so it works whatever the cwd or PYTHONPATH.
        argv = [self.python, "-I", str(SHIM), str(adir), "--", *spec.command]
        # Blocked until the shim has its handlers: a stop right after submit must not kill the
        # shim before it can record an exit (the child inherits this thread's mask).
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            with open(adir / LOG_FILE, "ab") as log:
                return subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, cwd=os.getcwd(), start_new_session=True, close_fds=True,
                )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _record_stop(self, adir: Path, signo: int, reason: str) -> None:
        # A shim killed along with its command leaves no exit.json: we know how it ended, so say it.
        if (adir / EXIT_FILE).exists():
            return
        write_json_atomic(adir / EXIT_FILE, {
            "exit_code": 128 + signo, "reason": reason, "signal": int(signo),
            "ended_at": self.clock.now().isoformat(),
        })

    def _reap(self, key: tuple[str, int], proc: subprocess.Popen) -> None:
        proc.wait()  # no zombies left behind by a long-running expbot
        with self._lock:
            if self._children.get(key) is proc:
                del self._children[key]
        self._changed.set()

    @staticmethod
    def _alive(launch: dict) -> bool:
        return procs.is_alive(int(launch["pid"]), launch.get("start_time"))

    def _signal_group(self, launch: dict, signo: int) -> None:
        if not self._alive(launch):
            return  # its pgid may belong to someone else by now
        try:
            os.killpg(int(launch["pgid"]), signo)
        except ProcessLookupError:
            pass

    def _wait_dead(self, launch: dict, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._alive(launch):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    def _last_progress(self, experiment_id: str, adir: Path) -> datetime | None:
        newest = _mtime(adir / HEARTBEAT_FILE)
        for dirpath, _dirs, files in os.walk(self.checkpoint_dir(experiment_id)):
            for name in files:
                mtime = _mtime(Path(dirpath) / name)
                if mtime is not None and (newest is None or mtime > newest):
                    newest = mtime
        return datetime.fromtimestamp(newest, timezone.utc) if newest is not None else None
