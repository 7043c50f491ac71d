"""What a LocalRunner knows in memory about its attempts' processes, and how it hears of their ends.

Attempts it started are its children: a thread per child waits for it, so an end is known as it
happens, with the exit code even when the shim could not write exit.json. Attempts adopted from an
earlier expbot are followed by pidfd (ExitWatcher), or polled where pidfds are unavailable.
"""
from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from adapters.local import containment
from adapters.local.files import LAUNCH_FILE, data_dir_error, read_json
from adapters.local.shim import EXIT_FILE, create_json_once
from adapters.local.watch import ExitWatcher
from core.ports import Clock

_POLL_FALLBACK = 0.25  # how often adopted attempts are looked at where pidfds are unavailable
Key = tuple[str, int]


class AttemptTracker:
    """Children, learned ends and change notices of one runner; thread-safe."""

    def __init__(self, root: Path, clock: Clock) -> None:
        self.root = root
        self.clock = clock
        self._state = threading.Lock()  # guards the collections below; never held while waiting
        self._changed = threading.Event()
        self._changed_ids: set[str] = set()
        self._children: dict[Key, subprocess.Popen] = {}
        self._ends: dict[Key, dict] = {}  # ends learned but not on disk (it refused the write)
        self._settled: set[Key] = set()  # ended attempts known to have left nothing behind
        self._polled: set[Key] = set()  # adopted attempts no pidfd watches
        self._watcher = ExitWatcher(lambda key: self.mark(key[0]))  # type: ignore[index]

    def mark(self, experiment_id: str) -> None:
        """Count the experiment as changed and end the current wait."""
        with self._state:
            self._changed_ids.add(experiment_id)
        self._changed.set()

    def wait(self, timeout: float) -> set[str]:
        """Block until a change is marked or `timeout` seconds pass; the experiments that changed."""
        with self._state:
            polled = {experiment_id for experiment_id, _n in self._polled}
        if polled:  # no pidfd for some adopted attempt: look at it every little while instead
            timeout = min(timeout, _POLL_FALLBACK)
        if self._changed.wait(max(timeout, 0.0)):
            self._changed.clear()
        with self._state:
            changed, self._changed_ids = self._changed_ids, set()
        return changed | polled

    def started(self, key: Key, proc: subprocess.Popen, adir: Path) -> None:
        """Wait for this child in a thread of its own (no zombies, and its end known at once)."""
        with self._state:
            self._children[key] = proc
        threading.Thread(target=self._reap, args=(key, proc, adir), daemon=True,
                         name=f"expbot-reap-{proc.pid}").start()

    def follow(self, key: Key, record: dict) -> None:
        """Hear of a running attempt's end as it happens, also when another expbot started it."""
        with self._state:
            if key in self._children or key in self._polled:
                return
        if not self._watcher.watch(key, int(record["pid"]), record.get("start_time")):
            with self._state:
                self._polled.add(key)

    def settle(self, key: Key, record: dict) -> None:
        """The attempt is over: kill whatever of it still runs (no wait: the next submit's fence
        waits), and remove its cgroup once empty."""
        with self._state:
            self._polled.discard(key)
            if key in self._settled:
                return
        if containment.members([record]):
            containment.signal_all([record], signal.SIGKILL)
        elif containment.remove(record.get("cgroup")):
            with self._state:
                self._settled.add(key)

    def settled(self, key: Key) -> bool:
        """Whether the attempt is known to have left nothing (nothing of it can come back: no process
        is left that could start one)."""
        with self._state:
            return key in self._settled

    def record_end(self, key: Key, adir: Path, end: dict) -> None:
        """Write exit.json unless it exists; if the disk refuses, keep the end in memory, saying why."""
        end = {**end, "ended_at": self.clock.now().isoformat()}
        try:
            create_json_once(adir / EXIT_FILE, end)
        except OSError as e:
            end["reason"] = "; ".join(filter(None, (end["reason"], data_dir_error(self.root, e))))
            with self._state:
                self._ends.setdefault(key, end)

    def learned_end(self, key: Key) -> dict | None:
        """An end recorded only in memory (the data dir refused exit.json), or None."""
        with self._state:
            return self._ends.get(key)

    def _reap(self, key: Key, proc: subprocess.Popen, adir: Path) -> None:
        # The shim exits with its command's code: that is how it ended, even without exit.json.
        code = proc.wait()
        if code >= 0 and read_json(adir / EXIT_FILE) is None:
            self.record_end(key, adir, {"exit_code": code, "reason": "", "signal": None})
        with self._state:
            if self._children.get(key) is proc:
                del self._children[key]
        record = read_json(adir / LAUNCH_FILE)
        if record is not None:
            self.settle(key, record)  # e.g. its shim was killed: the trainer must not run on
        self.mark(key[0])
