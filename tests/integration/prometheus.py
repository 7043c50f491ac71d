"""A real Prometheus for tests, scraping a small DCGM-style exporter whose values each test sets.

Fixtures: `prometheus` (per module: a started server scraping `exporter` every second) and
`dcgm` (per test: the exporter, emptied before the test). Prometheus comes from Debian's
`prometheus` package (/usr/bin/prometheus) or PATH; without it the tests are skipped, except
under CI (env CI set), where they fail: CI must run them.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

SCRAPE_INTERVAL = "1s"


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the Prometheus tests must run there, not be skipped)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DcgmExporter:
    """Serves /metrics in the exposition format: `set(metric, value, **labels)` changes what it says."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # Prometheus gave up on a slow scrape (busy test machine): the next one comes in 1 s

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True, name="dcgm-exporter").start()

    def set(self, metric: str, value: float, **labels: str) -> None:
        """Report `metric{labels} value` from the next scrape on."""
        with self._lock:
            self._values[(metric, tuple(sorted(labels.items())))] = value

    def remove(self, metric: str, **labels: str) -> None:
        """Stop reporting one series."""
        with self._lock:
            self._values.pop((metric, tuple(sorted(labels.items()))), None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def render(self) -> str:
        """The exposition text: HELP/TYPE lines, then one line per series."""
        with self._lock:
            items = sorted(self._values.items())
        lines, typed = [], set()
        for (metric, labels), value in items:
            if metric not in typed:
                lines += [f"# HELP {metric} test series", f"# TYPE {metric} gauge"]
                typed.add(metric)
            rendered = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{metric}{{{rendered}}} {value}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class PrometheusServer:
    url: str
    exporter: DcgmExporter
    process: subprocess.Popen
    root: Path


def find_prometheus() -> str | None:
    """The prometheus binary: PATH, else Debian's /usr/bin/prometheus."""
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None


def _start(binary: str, exporter: DcgmExporter, jobs: dict[str, str] | None = None) -> PrometheusServer:
    """Prometheus scraping the exporter (job dcgm) and any other `jobs` (name -> host:port) every second."""
    root = Path(tempfile.mkdtemp(prefix="expbot-prom-"))
    config = root / "prometheus.yml"
    targets = {"dcgm": f"127.0.0.1:{exporter.port}"} | (jobs or {})
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  scrape_timeout: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        + "".join(f"  - job_name: {name}\n    static_configs:\n      - targets: ['{target}']\n"
                  for name, target in targets.items())
    )
    port = _free_port()
    log = (root / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited ({process.returncode}):\n{(root / 'prometheus.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("prometheus did not become ready in 30 s")
        time.sleep(0.1)
    return PrometheusServer(url, exporter, process, root)


@contextmanager
def scraping(jobs: dict[str, str]) -> Iterator[PrometheusServer]:
    """A Prometheus of its own scraping `jobs` (name -> host:port, e.g. a real `expbot serve`) every second."""
    binary = find_prometheus()
    if binary is None:
        _unavailable("prometheus not found (apt-get install prometheus)")
    exporter = DcgmExporter()
    try:
        server = _start(binary, exporter, jobs)  # type: ignore[arg-type]
    except Exception:
        exporter.close()
        raise
    try:
        yield server
    finally:
        _stop(server)
        exporter.close()


def _stop(server: PrometheusServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    """A Prometheus on 127.0.0.1 (free port, temporary storage) scraping the test exporter every second."""
    binary = find_prometheus()
    if binary is None:
        _unavailable("prometheus not found (apt-get install prometheus)")
    exporter = DcgmExporter()
    try:
        server = _start(binary, exporter)  # type: ignore[arg-type]
    except Exception:
        exporter.close()
        raise
    try:
        yield server
    finally:
        _stop(server)
        exporter.close()


@pytest.fixture
def dcgm(prometheus: PrometheusServer) -> Iterator[DcgmExporter]:
    """The exporter Prometheus scrapes, empty at the start of each test."""
    prometheus.exporter.clear()
    yield prometheus.exporter
    prometheus.exporter.clear()
