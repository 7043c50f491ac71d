"""The embedded default backend: each attempt is a contained group of local processes, its state kept on disk.

Layout under root (so a new LocalRunner, or the CLI in another process, sees everything):
  <experiment_id>/checkpoints/            EXPBOT_CHECKPOINT_DIR, kept across attempts
  <experiment_id>/attempt-<n>/launch.json written durably BEFORE anything starts (attempt token,
                                          containment mechanism, cgroup, GPUs), then completed with
                                          the shim's pid, process group and /proc start time
  <experiment_id>/attempt-<n>/output.log  stdout + stderr
  <experiment_id>/attempt-<n>/exit.json   how it ended: by the shim, or by the runner (stops, and
                                          exit codes it learned as the shim's parent)
  <experiment_id>/attempt-<n>/heartbeat   EXPBOT_HEARTBEAT_FILE, touched by the command if it likes
  <experiment_id>/attempt-<n>/ranks.json  --nodes N: each rank's environment (gang.py, gang_shim.py)
No process of attempt N outlives it, and attempt N+1 starts only once none is left (containment.py).
"""
from __future__ import annotations

import fcntl
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from adapters.local import containment, gang, procs
from adapters.local.containment import CGROUP, SUBREAPER, Containment
from adapters.local.files import (
    HEARTBEAT_FILE, LAUNCH_FILE, LOG_FILE, data_dir_error, fsync_dir, last_progress, latest_checkpoint,
    read_json, read_log,
)
from adapters.local.gpus import avoided_gpus, fits_reason, node_name, pick_free, waiting_reason
from adapters.local.shim import EXIT_FILE, STOP_MARKER, write_json_atomic
from adapters.local.gang import GANG_SHIM
from adapters.local.spawn import SHIM, spawn_shim
from adapters.local.tracker import AttemptTracker, Key
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus, Clock, SubmitResult
from core.spec import ExperimentSpec

_KILL_WAIT = 5.0  # how long SIGKILLed processes may take to disappear
_FENCE_WAIT = 2.0  # how long a submit waits for an earlier attempt's leftovers to die


class LocalRunner:
    """ClusterBackend running attempts as local processes, with `gpus` GPUs handed out by index.

    cgroups: True/False to use (where allowed) or never use a cgroup per attempt; None reads
    EXPBOT_LOCAL_CGROUPS (off/0/false/no switch them off).
    """

    def __init__(self, root: Path, gpus: int, clock: Clock, python: str = sys.executable,
                 cgroups: bool | None = None) -> None:
        self.root = Path(root).resolve()  # absolute: EXPBOT_CHECKPOINT_DIR must not depend on cwd
        self.gpus = gpus
        self.clock = clock
        self.python = python
        self.containment = Containment(cgroups)
        self._lock = threading.Lock()  # one submit at a time in this process (the file lock: across)
        self._tracker = AttemptTracker(self.root, clock)

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
        return fits_reason(spec.total_gpus, self.gpus)  # every rank of a gang runs here

    def submit(self, launch: AttemptLaunch) -> SubmitResult:
        """Start the attempt unless it exists; start nothing while GPUs are short, an earlier attempt
        left processes or the data dir refuses the launch record."""
        spec = launch.spec
        if (why := self.check_fits(spec)) is not None:
            return SubmitResult(started=False, reason=why)
        adir = self.attempt_dir(launch.experiment_id, launch.attempt)
        try:
            with self._exclusive():
                record = read_json(adir / LAUNCH_FILE)
                if record is not None and record.get("pid") is not None:
                    return SubmitResult(started=True)
                if (why := self._fence(launch, record)) is not None:
                    return SubmitResult(started=False, reason=why)
                gpu_ids: list[int] = []
                if spec.total_gpus > 0:
                    in_use, avoid = self._gpus_in_use(), avoided_gpus(launch.avoid_nodes)
                    picked = pick_free(self.gpus, in_use, spec.total_gpus, avoid)
                    if picked is None:
                        why = waiting_reason(spec.total_gpus, len(in_use), self.gpus)
                        return SubmitResult(False, why + (f", not {node_name(avoid)}" if avoid else ""))
                    gpu_ids = picked
                return self._start(launch, adir, gpu_ids)
        except OSError as e:  # the lock file or the root itself cannot be created
            return SubmitResult(started=False, reason=data_dir_error(self.root, e))

    def status(self, experiment_id: str, attempt: int) -> AttemptStatus | None:
        """RUNNING while the shim lives, EXITED once its end is known, LOST if it vanished without one."""
        key = (experiment_id, attempt)
        adir = self.attempt_dir(experiment_id, attempt)
        record = read_json(adir / LAUNCH_FILE)
        if record is None:
            return None
        common = {
            "started_at": datetime.fromisoformat(record["started_at"]),
            "last_progress_at": last_progress(adir / HEARTBEAT_FILE, self.checkpoint_dir(experiment_id)),
            "node": node_name(record.get("gpu_ids") or ()),
        }
        if record.get("pid") is None:  # only the intent: a submit is starting it, or died doing so
            if containment.members([record]):
                return AttemptStatus(AttemptPhase.STARTING, **common)
            return AttemptStatus(AttemptPhase.LOST, reason="process vanished", infra=True, **common)
        ended = read_json(adir / EXIT_FILE)
        if ended is None and containment.shim_alive(record):
            self._tracker.follow(key, record)
            return AttemptStatus(AttemptPhase.RUNNING, **common)
        # It may have ended between the two looks; or we learned its end as its parent.
        ended = ended or read_json(adir / EXIT_FILE) or self._tracker.learned_end(key)
        self._tracker.settle(key, record)
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
        """SIGTERM every process of the attempt, SIGKILL what is left after `grace`; returns once none is.

        Idempotent, safe beside status() and another stop, and it works from launch.json alone
        (after a restart, or with the shim already dead: strays are found by cgroup and token).
        """
        key = (experiment_id, attempt)
        adir = self.attempt_dir(experiment_id, attempt)
        record = read_json(adir / LAUNCH_FILE)
        if record is None:
            return
        if containment.members([record]):
            try:
                (adir / STOP_MARKER).touch()  # the shim must not forward what it gets itself
            except OSError:
                pass  # a full disk: the command may get SIGTERM twice, which it must bear anyway
            containment.signal_all([record], signal.SIGTERM)
            if containment.wait_gone([record], max(grace.total_seconds(), 0.0)):
                self._record_stop(key, adir, signal.SIGTERM, "terminated by SIGTERM")
            else:
                containment.signal_all([record], signal.SIGKILL)
                if containment.wait_gone([record], _KILL_WAIT):
                    self._record_stop(key, adir, signal.SIGKILL,
                                      f"killed by SIGKILL after a {grace.total_seconds():g}s stop grace")
        self._tracker.settle(key, record)

    def process_info(self, experiment_id: str, attempt: int) -> dict | None:
        """Where an attempt runs: {pid, pgid, mechanism ('cgroup' | 'subreaper'), cgroup, running, and a gang's
        nodes and master_port}; None before it started."""
        return containment.process_info(read_json(self.attempt_dir(experiment_id, attempt) / LAUNCH_FILE))

    def latest_checkpoint(self, experiment_id: str, pattern: str) -> str | None:
        """Absolute path of the newest file matching the glob in the checkpoint dir, or None."""
        return latest_checkpoint(self.checkpoint_dir(experiment_id), pattern)

    def logs(self, experiment_id: str, attempt: int, tail_lines: int | None = None) -> str:
        """The attempt's output.log (its last `tail_lines` lines if given; "" if none)."""
        return read_log(self.attempt_dir(experiment_id, attempt) / LOG_FILE, tail_lines)

    def release(self, experiment_id: str, retry_after: float = 5.0) -> None:
        """The experiment ended: remove its attempts' cgroups (checkpoints stay for the researcher).

        A cgroup holding a killed process that nobody has reaped yet cannot be removed: it is tried
        again once, a little later, so none is left behind for good."""
        cgroups = [r.get("cgroup") for launch in self.experiment_dir(experiment_id).glob(f"attempt-*/{LAUNCH_FILE}")
                   if (r := read_json(launch))]
        left = [c for c in cgroups if c and not containment.remove(c)]
        if left and retry_after > 0:
            timer = threading.Timer(retry_after, lambda: [containment.remove(c) for c in left])
            timer.daemon = True
            timer.start()

    def wait_for_change(self, timeout: float) -> set[str]:
        """Block until an attempt ends or `timeout` seconds pass; the experiments that changed."""
        return self._tracker.wait(timeout)

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
            record = read_json(launch_file)
            if not record or not record.get("gpu_ids") or (launch_file.parent / EXIT_FILE).exists():
                continue
            if containment.shim_alive(record):
                used.update(record["gpu_ids"])
        return used

    def _fence(self, launch: AttemptLaunch, own: dict | None) -> str | None:
        # Attempt N+1 never runs beside anything of attempts 1..N, nor beside what a submit of N+1
        # that died half-way (its intent on disk) may have started.
        records = [r for n in range(1, launch.attempt) if not self._tracker.settled((launch.experiment_id, n))
                   and (r := read_json(self.attempt_dir(launch.experiment_id, n) / LAUNCH_FILE))]
        records += [own] if own is not None else []
        if not records:
            return None
        if containment.members(records):
            containment.signal_all(records, signal.SIGKILL)
            if not containment.wait_gone(records, _FENCE_WAIT):
                left = sorted(containment.members(records))
                return (f"waiting for {len(left)} leftover processes of earlier attempts to end "
                        f"(pids {', '.join(map(str, left[:5]))})")
        for record in records:
            containment.remove(record.get("cgroup"))
        return None

    def _start(self, launch: AttemptLaunch, adir: Path, gpu_ids: list[int]) -> SubmitResult:
        # Intent before action: the record (with the token that finds every process of the attempt)
        # is on disk before anything starts, so nothing can ever run that expbot does not know of.
        token = secrets.token_hex(16)
        cgroup = self.containment.create(launch.experiment_id, launch.attempt, token)
        record = {
            "experiment_id": launch.experiment_id, "experiment_name": launch.experiment_name,
            "attempt": launch.attempt, "owner": launch.owner, "command": list(launch.spec.command),
            "resume_from": launch.resume_from or "", "pid": None, "pgid": None, "start_time": None,
            "token": token, "mechanism": CGROUP if cgroup else SUBREAPER, "cgroup": cgroup,
            "gpu_ids": gpu_ids, "started_at": self.clock.now().isoformat(),
        }
        try:
            self.checkpoint_dir(launch.experiment_id).mkdir(parents=True, exist_ok=True)
            adir.mkdir(parents=True, exist_ok=True)
            record.update(gang.prepare(launch.spec, adir, gpu_ids))  # ranks.json: before the intent names it
            write_json_atomic(adir / LAUNCH_FILE, record)
            fsync_dir(adir)
            log = open(adir / LOG_FILE, "ab")
        except OSError as e:
            containment.remove(cgroup)
            return SubmitResult(started=False, reason=data_dir_error(self.root, e))
        try:
            with log:
                proc = spawn_shim(self.python, launch, adir, self.checkpoint_dir(launch.experiment_id),
                                  gpu_ids, token, cgroup, log, GANG_SHIM if launch.spec.nodes > 1 else SHIM)
        except OSError as e:
            containment.remove(cgroup)
            return SubmitResult(started=False, reason=f"cannot start {self.python}: {e.strerror}")
        # The shim moves itself into the cgroup before it starts the command (the kernel makes a
        # move cost milliseconds: not on the supervisor's path). Read before anyone can reap it:
        # an unreaped process keeps its /proc entry.
        record.update(pid=proc.pid, pgid=proc.pid, start_time=procs.start_time(proc.pid),
                      started_at=self.clock.now().isoformat())  # start_new_session: it leads its group
        try:
            # No fsync: this only matters while the machine stays up (a crash ends the process too),
            # and the intent on disk already finds the process by its token.
            write_json_atomic(adir / LAUNCH_FILE, record, sync=False)
        except OSError as e:
            # Nothing may run that launch.json does not name: undo the start.
            containment.signal_all([record], signal.SIGKILL)
            proc.wait()
            containment.wait_gone([record], _KILL_WAIT)
            containment.remove(record["cgroup"])
            return SubmitResult(started=False, reason=data_dir_error(self.root, e))
        self._tracker.started((launch.experiment_id, launch.attempt), proc, adir)
        return SubmitResult(started=True)

    def _record_stop(self, key: Key, adir: Path, signo: int, reason: str) -> None:
        # A shim killed along with its command leaves no exit.json: we know how it ended, so say it.
        if read_json(adir / EXIT_FILE) is None:
            self._tracker.record_end(key, adir, {"exit_code": 128 + signo, "reason": reason, "signal": int(signo)})
