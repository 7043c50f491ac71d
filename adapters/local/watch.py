"""Learning that a process we did not start (adopted after a restart) has ended, as it happens.

One thread polls a pidfd per process (Linux 5.3+); where pidfd_open is missing, watch() says so and
the runner falls back to polling.
"""
from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable, Hashable

from adapters.local import procs


class ExitWatcher:
    """Calls on_exit(key) once, from its own thread, when a watched process ends."""

    def __init__(self, on_exit: Callable[[Hashable], None]) -> None:
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._fds: dict[int, Hashable] = {}
        self._keys: set[Hashable] = set()
        self._wake: tuple[int, int] | None = None

    def watch(self, key: Hashable, pid: int, start_time: int | None) -> bool:
        """Report when pid (started at start_time) ends; False when pidfds are unavailable here."""
        with self._lock:
            if key in self._keys:
                return True
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._on_exit(key)
            return True
        except (AttributeError, OSError):
            return False  # an old kernel or Python: the caller polls
        if not procs.is_alive(pid, start_time):  # ended, or the pid was reused before we opened it
            os.close(fd)
            self._on_exit(key)
            return True
        with self._lock:
            if key in self._keys:
                os.close(fd)
                return True
            self._fds[fd] = key
            self._keys.add(key)
            if self._wake is None:
                self._wake = os.pipe()
                os.set_blocking(self._wake[1], False)
                threading.Thread(target=self._run, daemon=True, name="expbot-pidfd").start()
            wake_w = self._wake[1]
        try:
            os.write(wake_w, b"x")  # the poll below picks up the new fd
        except BlockingIOError:
            pass  # already awake
        return True

    def _run(self) -> None:
        assert self._wake is not None
        wake_r = self._wake[0]
        while True:
            poller = select.poll()
            poller.register(wake_r, select.POLLIN)
            with self._lock:
                for fd in self._fds:
                    poller.register(fd, select.POLLIN)
            for fd, _events in poller.poll():
                if fd == wake_r:
                    os.read(wake_r, 4096)
                    continue
                with self._lock:
                    key = self._fds.pop(fd, None)
                    self._keys.discard(key)
                os.close(fd)
                if key is not None:
                    self._on_exit(key)
