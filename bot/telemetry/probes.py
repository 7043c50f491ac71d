"""/healthz, /readyz and /metrics: fast answers that never wait on Slack.

/readyz: the database answers a `SELECT 1` within a short timeout (checked on a thread of its own,
so a hung connection delays the answer by the timeout at most, and a check still hanging from an
earlier probe is itself an answer: not ready). /healthz: while this replica leads, its supervisor
completed a pass within the last 3 resync intervals (a wedged supervisor gets the pod restarted);
a follower, or a leader that only just began, is healthy.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import make_wsgi_app

from bot.telemetry.process import Telemetry

READY_TIMEOUT_SECONDS = 2.0
STALE_PASSES = 3  # resync intervals without a completed pass before /healthz fails


class DatabaseCheck:
    """`SELECT 1` on a thread of its own, waited for at most `timeout` seconds."""

    def __init__(self, session_factory: Any, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self._sessions, self._timeout = session_factory, timeout
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._lock = threading.Lock()
        self._running: Future | None = None

    def __call__(self) -> str | None:
        """None when the database answered in time, else why not (one line)."""
        with self._lock:
            if self._running is not None and not self._running.done():
                return f"the database has not answered SELECT 1 for over {self._timeout:g}s"
            self._running = self._pool.submit(self._select_one)
            running = self._running
        try:
            running.result(timeout=self._timeout)
        except FutureTimeout:
            return f"the database did not answer SELECT 1 within {self._timeout:g}s"
        except Exception as e:
            return "the database is unreachable: " + " ".join(str(getattr(e, "orig", None) or e).split())[:300]
        return None

    def _select_one(self) -> None:
        with self._sessions() as session:
            session.execute(sa.text("SELECT 1"))


class Liveness:
    """Whether the leader's supervisor still completes passes (a follower always is live)."""

    def __init__(self, telemetry: Telemetry, last_pass: Callable[[], datetime | None], now: Callable[[], datetime],
                 resync_seconds: float) -> None:
        self._telemetry, self._last_pass, self._now, self._resync = telemetry, last_pass, now, resync_seconds

    def __call__(self) -> str | None:
        """None while healthy, else why not (one line)."""
        leading = self._telemetry.leading_for()
        limit = STALE_PASSES * self._resync
        if leading is None or leading < limit:
            return None
        last = self._last_pass()
        idle = (self._now() - last).total_seconds() if last is not None else leading
        if idle > limit:
            return f"the supervisor has not completed a pass for {idle:.0f}s (more than {STALE_PASSES} resync intervals)"
        return None


def operations_app(telemetry: Telemetry, ready: Callable[[], str | None], live: Callable[[], str | None]) -> Any:
    """A WSGI app for /metrics, /readyz and /healthz."""
    metrics = make_wsgi_app(telemetry.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/metrics":
            return metrics(environ, start_response)
        problem = ready() if path == "/readyz" else live()
        status = "200 OK" if problem is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [(problem or "ok").encode()]

    return app
