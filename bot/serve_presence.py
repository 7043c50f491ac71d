"""Whether an `expbot serve` runs: its heartbeat in the database, and one serve per local data directory."""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from adapters.db.serve_heartbeats import ServeBeat, SqlServeHeartbeats
from core.errors import ExpbotError
from core.failures import FailureLog

log = logging.getLogger("expbot.serve")


def hold_local_data_dir(settings: Any) -> Callable[[], None]:
    """Refuse a second local `serve` on this data directory (both would start and adopt its attempts).

    Returns what releases the hold. On Kubernetes several replicas are legal (the Lease picks the
    leader), so nothing is held there.
    """
    if settings.backend != "local":
        return lambda: None
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    # flock, not a pid file: the kernel drops the lock when this process exits, however it exits.
    lock = (data_dir / "serve.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise ExpbotError(
            f"another `expbot serve` (pid {holder}) is already running on EXPBOT_DATA_DIR={data_dir} with the "
            "local backend: stop it first, or give this one its own EXPBOT_DATA_DIR"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock.close  # closing the file releases the lock


class Heartbeat:
    """This serve's row in serve_heartbeat: stamped every interval while it leads, removed on a clean stop."""

    def __init__(self, session_factory: Any, clock: Any, backend: str, interval_seconds: float) -> None:
        self._store = SqlServeHeartbeats(session_factory)
        self._clock = clock
        now = clock.now()
        self._beat = ServeBeat(instance=uuid.uuid4().hex, backend=backend, host=socket.gethostname(),
                               pid=os.getpid(), started_at=now, beat_at=now, interval_seconds=interval_seconds)
        self._failures = FailureLog(log, "serve heartbeat")
        self._lock = threading.Lock()  # a beat still running when serve stops must not bring the row back
        self._stopped = False

    def start(self, scheduler: Any) -> None:
        """Beat now, then every interval on the scheduler's pool."""
        scheduler.add_job(self.beat, "interval", seconds=self._beat.interval_seconds, id="serve-heartbeat",
                          max_instances=1, coalesce=True, next_run_time=datetime.now().astimezone())

    def beat(self) -> None:
        """Stamp the row; a failure (a sick database) is logged once per streak and retried next time."""
        with self._lock:
            if self._stopped:
                return
            try:
                self._store.beat(replace(self._beat, beat_at=self._clock.now()))
            except Exception as e:  # noqa: BLE001 - the next beat retries
                self._failures.failed(e)
            else:
                self._failures.succeeded()

    def stop(self) -> None:
        """A clean stop removes the row at once: launches from now on are told nothing runs them."""
        with self._lock:
            self._stopped = True
        try:
            self._store.forget(self._beat.instance)
        except Exception as e:  # noqa: BLE001 - the row goes stale by itself
            log.warning("could not remove the serve heartbeat: %s", e)


def start_heartbeat(bot: Any, scheduler: Any) -> Heartbeat:
    """The leader's heartbeat, beating on `scheduler` until its stop()."""
    heartbeat = Heartbeat(bot.session_factory, bot.clock, bot.settings.backend, bot.settings.serve_heartbeat_seconds)
    heartbeat.start(scheduler)
    return heartbeat

