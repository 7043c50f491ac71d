"""HttpServer (waitress on a thread): it stops cleanly even with connections still open."""
from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from bot.http_server import HttpServer, routes
from core.errors import ExpbotError


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """Exceptions that ended any thread during the test."""
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    yield seen


def test_stop_ends_the_loop_and_closes_open_connections(thread_errors: list[BaseException]) -> None:
    server = HttpServer(routes(None), "127.0.0.1", 0, threads=2).start()
    base = f"http://127.0.0.1:{server.port}"
    with httpx.Client(timeout=5) as kept_alive:
        assert kept_alive.get(f"{base}/healthz").text == "ok"  # its connection stays open
        server.stop()
        assert not server._thread.is_alive()
        assert thread_errors == []  # no EBADF from a select() whose sockets were closed under it
        with pytest.raises(httpx.TransportError):
            kept_alive.get(f"{base}/healthz")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_stop_before_start_closes_the_socket() -> None:
    server = HttpServer(routes(None), "127.0.0.1", 0, threads=1)
    port = server.port
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_stop_ends_the_loop_even_when_the_wake_up_fails(thread_errors, monkeypatch) -> None:
    # Seen once in CI: pulling the trigger raised EBADF. The trigger only wakes the poll early;
    # stopping must not depend on it.
    server = HttpServer(routes(None), "127.0.0.1", 0, threads=1).start()

    def broken_wake_up() -> None:
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(server._server, "pull_trigger", broken_wake_up)
    server.stop()
    assert not server._thread.is_alive() and thread_errors == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)


def test_a_taken_port_is_one_clear_error() -> None:
    first = HttpServer(routes(None), "127.0.0.1", 0, threads=1)
    try:
        taken = rf"cannot listen for HTTP on 127.0.0.1:{first.port}: .*in use \(EXPBOT_HTTP_PORT picks another port\)"
        with pytest.raises(ExpbotError, match=taken):
            HttpServer(routes(None), "127.0.0.1", first.port, threads=1)
    finally:
        first.stop()
