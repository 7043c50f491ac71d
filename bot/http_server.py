"""expbot's HTTP endpoint under a production WSGI server (waitress): Slack, progress reports, probes."""
from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from core.errors import ExpbotError

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def routes(slack: WsgiApp | None, report: WsgiApp | None = None, ops: Any = None) -> WsgiApp:
    """Dispatch /metrics and the probes to `ops`, /report to `report`, everything else to Slack.

    `ops` (bot.telemetry.wiring.Operations) also times every Slack request: Bolt answers once the
    listener acked, so the request's time is the ack latency. Without it the probes just answer ok.
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path in ("/healthz", "/readyz", "/metrics") and ops is not None:
            return ops.app(environ, start_response)
        if path in ("/healthz", "/readyz"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        if path == "/report" and report is not None:
            return report(environ, start_response)
        if slack is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        if ops is None:
            return slack(environ, start_response)
        began = time.monotonic()
        try:
            return slack(environ, start_response)
        finally:
            ops.observe_ack(time.monotonic() - began)

    return app


class HttpServer:
    """A waitress server on a background thread; port 0 picks a free port."""

    def __init__(self, app: WsgiApp, host: str, port: int, threads: int = 16) -> None:
        # Bolt acks from the request thread while lazy listeners run on their own pool, so a
        # modest thread count keeps acks fast even when launches are busy.
        try:
            self._server = create_server(app, host=host, port=port, threads=threads, ident="expbot")
        except OSError as e:  # e.g. the port is taken, or the host does not resolve
            hint = " (EXPBOT_HTTP_PORT picks another port)" if e.errno == errno.EADDRINUSE else ""
            raise ExpbotError(f"cannot listen for HTTP on {host}:{port}: {e.strerror or e}{hint}") from e
        self._stopping = threading.Event()
        # Held while the wake-up byte is written and while the loop closes its channels: the trigger
        # writes to a stored fd number, which after the close may belong to another file.
        self._closing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.effective_port)

    def start(self) -> "HttpServer":
        """Serve in the background."""
        self._thread.start()
        log.info("listening for HTTP on port %d", self.port)
        return self

    def stop(self) -> None:
        """End the request threads, then close the listening socket and every open connection."""
        # Requests still running finish first: done, each pulls the trigger, which is still open.
        self._server.task_dispatcher.shutdown(timeout=5)
        self._stopping.set()
        if self._thread.is_alive():
            with self._closing:
                if not self._closed:
                    try:
                        self._server.pull_trigger()  # wakes the poll now rather than at its timeout
                    except OSError:  # the wake-up failed: the poll times out on its own
                        pass
            self._thread.join(timeout=5)
        else:
            self._close_channels()

    def _serve(self) -> None:
        # waitress's own run() loops until its map of channels is empty, and closing sockets from
        # another thread while it sits in select() kills it with EBADF. So poll one round at a
        # time, and close every channel (listener, trigger, connections) here, on this thread.
        try:
            while self._server._map and not self._stopping.is_set():
                wasyncore.loop(timeout=self._server.adj.asyncore_loop_timeout, map=self._server._map, count=1)
        finally:  # a failed poll must not leave the port open either
            self._close_channels()

    def _close_channels(self) -> None:
        with self._closing:
            self._closed = True
            wasyncore.close_all(self._server._map)  # waitress keeps no public handle on its map


class Stopper:
    """Calling it stops what was started (a server, a Socket Mode connection); `port`: the HTTP port, if any."""

    def __init__(self, stop: Callable[[], None], port: int | None) -> None:
        self._stop, self.port = stop, port

    def __call__(self) -> None:
        self._stop()
