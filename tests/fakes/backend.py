"""In-memory ClusterBackend driven by tests (passes the same contract tests as LocalRunner)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath

from adapters.local.gpus import fits_reason, pick_free, waiting_reason
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus, Clock, SubmitResult
from core.spec import ExperimentSpec

_LIVE = (AttemptPhase.QUEUED, AttemptPhase.STARTING, AttemptPhase.RUNNING)
_HOLDS_GPUS = (AttemptPhase.STARTING, AttemptPhase.RUNNING)  # an unplaced (QUEUED) one holds none


class _UtcNow:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass
class FakeAttempt:
    """One submitted attempt as the fake sees it."""

    launch: AttemptLaunch
    status: AttemptStatus
    gpu_ids: list[int] = field(default_factory=list)
    log: str = ""


class FakeBackend:
    """A cluster with `gpus` GPUs whose attempts move only when the test says so."""

    def __init__(self, gpus: int = 8, clock: Clock | None = None, auto_run: bool = False) -> None:
        self.gpus = gpus
        self.clock = clock or _UtcNow()
        self.auto_run = auto_run  # True: submitted attempts are RUNNING at once, not STARTING
        self.attempts: dict[tuple[str, int], FakeAttempt] = {}
        self.submits: list[AttemptLaunch] = []  # launches that created an attempt
        self.refused: list[tuple[AttemptLaunch, str]] = []  # launches told to wait, and why
        self.stops: list[tuple[str, int, timedelta]] = []
        self.checkpoints: dict[str, list[str]] = {}
        self.stop_exit_code = 143  # what a stopped attempt exits with
        self.released: list[str] = []
        self.names_changes = False  # True: wait_for_change names what changed, as a watch does
        self._changed_ids: set[str] = set()
        self._lock = threading.RLock()
        self._changed = threading.Event()

    # --- ClusterBackend ----------------------------------------------------------------------
    def check_fits(self, spec: ExperimentSpec) -> str | None:
        """Why the spec can never run here, or None."""
        return fits_reason(spec.total_gpus, self.gpus)  # as the local runner: every rank here

    def submit(self, launch: AttemptLaunch) -> SubmitResult:
        """Create the attempt (STARTING) unless it exists; wait when GPUs are short."""
        with self._lock:
            if (why := self.check_fits(launch.spec)) is not None:
                self.refused.append((launch, why))
                return SubmitResult(False, why)
            key = (launch.experiment_id, launch.attempt)
            if key in self.attempts:
                return SubmitResult(True)
            in_use = self.gpus_in_use()
            gpu_ids = pick_free(self.gpus, in_use, launch.spec.total_gpus)
            if gpu_ids is None:
                why = waiting_reason(launch.spec.total_gpus, len(in_use), self.gpus)
                self.refused.append((launch, why))
                return SubmitResult(False, why)
            now = self.clock.now()
            phase = AttemptPhase.RUNNING if self.auto_run else AttemptPhase.STARTING
            status = AttemptStatus(phase, started_at=now if self.auto_run else None)
            self.attempts[key] = FakeAttempt(launch, status, gpu_ids)
            self.submits.append(launch)
            self._changed_ids.add(launch.experiment_id)
            self._changed.set()
            return SubmitResult(True)

    def status(self, experiment_id: str, attempt: int) -> AttemptStatus | None:
        """The attempt's current status, or None if never submitted."""
        with self._lock:
            found = self.attempts.get((experiment_id, attempt))
            return found.status if found else None

    def stop(self, experiment_id: str, attempt: int, grace: timedelta) -> None:
        """Record the stop; a live attempt exits with stop_exit_code."""
        with self._lock:
            self.stops.append((experiment_id, attempt, grace))
            found = self.attempts.get((experiment_id, attempt))
            if found and found.status.phase in _LIVE:
                self.exit(experiment_id, attempt, self.stop_exit_code, reason="terminated by SIGTERM")

    def latest_checkpoint(self, experiment_id: str, pattern: str) -> str | None:
        """The most recently set checkpoint whose path matches the glob, or None."""
        with self._lock:
            for path in reversed(self.checkpoints.get(experiment_id, [])):
                if pattern in ("*", "**") or PurePosixPath(path).match(pattern):
                    return path
            return None

    def logs(self, experiment_id: str, attempt: int, tail_lines: int | None = None) -> str:
        """The attempt's log as set by the test (its last `tail_lines` lines if given)."""
        with self._lock:
            found = self.attempts.get((experiment_id, attempt))
            text = found.log if found else ""
        if tail_lines is None:
            return text
        if tail_lines <= 0:
            return ""
        return "".join(text.splitlines(keepends=True)[-tail_lines:])

    def release(self, experiment_id: str) -> None:
        """Record that the experiment's kept resources were released."""
        with self._lock:
            self.released.append(experiment_id)

    def wait_for_change(self, timeout: float) -> set[str] | None:
        """Block until the test changes an attempt, or `timeout` seconds pass; names the changes if asked to."""
        if self._changed.wait(timeout):
            self._changed.clear()
        with self._lock:
            changed, self._changed_ids = self._changed_ids, set()
        return changed if self.names_changes else None

    # --- test controls -----------------------------------------------------------------------
    def gpus_in_use(self) -> set[int]:
        """GPU indices held by attempts that have not ended."""
        with self._lock:
            return {g for a in self.attempts.values() if a.status.phase in _HOLDS_GPUS for g in a.gpu_ids}

    def launch(self, experiment_id: str, attempt: int) -> AttemptLaunch:
        """The launch an attempt was created from."""
        return self.attempts[(experiment_id, attempt)].launch

    def run(self, experiment_id: str, attempt: int, node: str | None = None) -> None:
        """The attempt is now running (on `node`, if given)."""
        self._set(experiment_id, attempt, phase=AttemptPhase.RUNNING, started_at=self.clock.now(), node=node)

    def queue(self, experiment_id: str, attempt: int, reason: str = "Unschedulable") -> None:
        """The cluster accepted the attempt but cannot place it."""
        self._set(experiment_id, attempt, phase=AttemptPhase.QUEUED, reason=reason)

    def exit(self, experiment_id: str, attempt: int, code: int | None, reason: str = "", oom: bool = False,
             infra: bool = False) -> None:
        """The attempt's command ended with `code` (oom: killed by the OOM killer)."""
        self._set(experiment_id, attempt, phase=AttemptPhase.EXITED, exit_code=code,
                  reason=reason or ("OOMKilled" if oom else ""), oom_killed=oom, infra=infra,
                  ended_at=self.clock.now())

    def evict(self, experiment_id: str, attempt: int, reason: str = "Evicted",
              code: int | None = None) -> None:
        """The cluster evicted/preempted the attempt."""
        self.exit(experiment_id, attempt, code, reason=reason, infra=True)

    def lose(self, experiment_id: str, attempt: int, reason: str = "process vanished") -> None:
        """The backend lost the attempt (node gone, process vanished)."""
        self._set(experiment_id, attempt, phase=AttemptPhase.LOST, reason=reason, infra=True,
                  ended_at=self.clock.now())

    def progress(self, experiment_id: str, attempt: int, at: datetime | None = None) -> None:
        """A checkpoint or heartbeat was seen at `at` (default now)."""
        self._set(experiment_id, attempt, last_progress_at=at or self.clock.now())

    def set_checkpoint(self, experiment_id: str, path: str) -> None:
        """A new checkpoint exists (it becomes the newest)."""
        with self._lock:
            self.checkpoints.setdefault(experiment_id, []).append(path)

    def write_log(self, experiment_id: str, attempt: int, text: str) -> None:
        """Append output to the attempt's log."""
        with self._lock:
            self.attempts[(experiment_id, attempt)].log += text

    def _set(self, experiment_id: str, attempt: int, **changes: object) -> None:
        with self._lock:
            found = self.attempts[(experiment_id, attempt)]
            found.status = replace(found.status, **changes)  # type: ignore[arg-type]
            self._changed_ids.add(experiment_id)
            self._changed.set()
