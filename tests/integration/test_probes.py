"""serve's probes mean something: /readyz fails while the database does not answer, /healthz while the
leader's supervisor is wedged; both answer at once either way (they never wait on Slack or a hung query)."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from bot.bootstrap import bootstrap
from bot.config import Settings
from bot.serve import run_forever
from tests.integration.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tests.polling import wait_for

pytestmark = pytest.mark.slow


class PausableProxy:
    """A TCP proxy to the database: `pause()` stops every byte both ways (a partition), `resume()` lets them on."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="db-proxy").start()

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed.set()
        self._open.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                self._open.wait()  # paused: what arrived waits here, and nothing more is read
                if not data or self._closed.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class InProcessServe:
    """`run_forever` on a thread, HTTP on a free port; `url(path)` for the probes."""

    def __init__(self, **settings: Any) -> None:
        self.bot = bootstrap(Settings(**({"http_host": "127.0.0.1", "http_port": 0, "local_gpus": 0,
                                           "resync_interval_seconds": 0.3, "relay_interval_seconds": 0.3} | settings)))
        self._stop = threading.Event()
        ready: dict[str, Any] = {}
        started = threading.Event()
        self._thread = threading.Thread(target=run_forever, args=(self.bot, self._stop), daemon=True,
                                        kwargs={"on_ready": lambda info: (ready.update(info), started.set())})
        self._thread.start()
        assert started.wait(30), "serve did not start"
        self.base = f"http://127.0.0.1:{ready['http_port']}"

    def get(self, path: str) -> tuple[int, str, float]:
        """(status, body, seconds taken)."""
        began = time.monotonic()
        response = httpx.get(self.base + path, timeout=30)
        return response.status_code, response.text, time.monotonic() - began

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def proxied_postgres(postgres_url: str) -> Iterator[tuple[str, PausableProxy]]:  # noqa: F811
    url = make_url(postgres_url)
    proxy = PausableProxy(url.host or "127.0.0.1", url.port or 5432)
    yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    proxy.close()


def test_readyz_fails_at_once_while_the_database_does_not_answer_and_recovers(tmp_path: Path, proxied_postgres):
    database_url, proxy = proxied_postgres
    serve = InProcessServe(data_dir=tmp_path, database_url=database_url)
    try:
        assert serve.get("/readyz")[:2] == (200, "ok")
        proxy.pause()
        status, body, took = serve.get("/readyz")
        assert status == 503 and "SELECT 1" in body, body
        # Bounded by the probe's own timeout (2 s), not by TCP's or the driver's: generous for a loaded machine.
        assert took < 10, took
        # The check still hanging from before is an answer too, and a quick one.
        status, body, took = serve.get("/readyz")
        assert status == 503 and took < 10, (body, took)
        assert serve.get("/healthz")[2] < 10  # liveness never waits on the database
        # /metrics says the store cannot be read, and still serves the process metrics, without hanging.
        status, body, took = serve.get("/metrics")
        assert status == 200 and "expbot_store_up 0.0" in body and "expbot_leader" in body, body[-500:]
        assert "expbot_spend_total" not in body and took < 20, took
        proxy.resume()
        wait_for(lambda: "expbot_store_up 1.0" in serve.get("/metrics")[1], timeout=60, what="/metrics to read the store again")
        wait_for(lambda: serve.get("/readyz")[0] == 200, timeout=30, what="/readyz once the database answers")
    finally:
        proxy.resume()
        serve.close()


def test_healthz_fails_while_the_supervisor_is_wedged_and_recovers(tmp_path: Path):
    serve = InProcessServe(data_dir=tmp_path)
    wedged, release = threading.Event(), threading.Event()
    original = serve.bot.supervisor.reconcile_once

    def stuck_pass() -> Any:
        if wedged.is_set():
            release.wait(60)  # a pass that never returns: a deadlock, a hung call
        return original()

    serve.bot.supervisor.reconcile_once = stuck_pass  # type: ignore[method-assign]
    try:
        wait_for(lambda: serve.get("/healthz")[0] == 200, timeout=30, what="a healthy supervisor")
        wedged.set()
        status, body = wait_for(lambda: (r := serve.get("/healthz"))[0] == 503 and r[:2], timeout=30,
                                what="/healthz to fail on the wedged supervisor")
        assert "has not completed a pass" in body and "resync intervals" in body, body
        assert serve.get("/readyz")[0] == 200  # the database is fine: ready, but not alive
        wedged.clear()
        release.set()
        wait_for(lambda: serve.get("/healthz")[0] == 200, timeout=30, what="/healthz once passes complete again")
    finally:
        release.set()
        serve.close()
