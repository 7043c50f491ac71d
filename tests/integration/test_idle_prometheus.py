"""Idle detection against a real Prometheus scraping a DCGM-style exporter, with 2-second windows."""
from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.clock import SystemClock
from adapters.db.engine import make_session_factory
from adapters.db.idle_states import SqlIdleStates
from adapters.metrics.prometheus import PrometheusGpuMetrics, pod_selector
from core import commands, handlers
from core.bus import MessageBus
from core.idle import IdleAction, IdleConfig
from core.idle_job import IdleOutcome, KeepExperiment, check_idle, handle_keep
from core.metrics import MetricsUnavailable
from core.model import Experiment, State
from core.spec import ExperimentSpec
from tests.fakes.backend import FakeBackend
from tests.integration.conftest import Store
from tests.integration.prometheus import DcgmExporter, PrometheusServer, _free_port, dcgm, prometheus  # noqa: F401
from tests.polling import wait_for

pytestmark = pytest.mark.slow

ENGINE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
UTIL = "DCGM_FI_DEV_GPU_UTIL"
WINDOW = timedelta(seconds=2)
CONFIG = IdleConfig(
    sample_window=WINDOW, warm_up=timedelta(0), idle_for=timedelta(seconds=4), grace=timedelta(seconds=3),
    check_every=timedelta(seconds=1), lookback=timedelta(seconds=20),
)


class IdleStack:
    """SQLite store, SqlIdleStates, the bus with Stop and Keep, Prometheus metrics: the job as serve runs it."""

    def __init__(self, store: Store, prometheus_url: str) -> None:
        assert store.engine is not None
        self.store, self.clock = store, SystemClock()
        self.states = SqlIdleStates(make_session_factory(store.engine))
        self.backend = FakeBackend(gpus=8)
        self.metrics = PrometheusGpuMetrics(prometheus_url, step=WINDOW)
        self.bus = MessageBus(store.new_uow, {
            commands.StopExperiment: functools.partial(
                handlers.stop, backend=self.backend, clock=self.clock, grace=timedelta(seconds=1)),
            KeepExperiment: functools.partial(handle_keep, idle_states=self.states, clock=self.clock),
        })

    def running(self, name: str, gpus: int = 2) -> Experiment:
        now = self.clock.now()
        spec = ExperimentSpec.model_validate({"name": name, "command": ("python", "t.py"), "image": "py", "gpus": gpus})
        exp = Experiment(id=uuid.uuid4().hex, spec=spec, owner="UANA", created_at=now)
        exp.launched(now)
        exp.start_attempt(None, now)
        exp.mark_running(now)
        self.store.save(exp)
        return exp

    def check(self) -> list[IdleOutcome]:
        return [o for o in check_idle(self.store.new_uow, self.states, self.metrics, self.clock, CONFIG, self.bus)
                if o.action != IdleAction.NONE or o.error]

    def run_for(self, seconds: float) -> list[IdleOutcome]:
        """Run the job every 0.25 s for a while; the outcomes that did something."""
        seen, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen += self.check()
            time.sleep(0.25)
        return seen

    def run_until(self, action: IdleAction, timeout: float = 30.0) -> list[IdleOutcome]:
        """Run the job until one outcome is `action`; everything seen up to then."""
        seen: list[IdleOutcome] = []

        def reached() -> bool:
            seen.extend(self.check())
            return any(o.action == action for o in seen)

        wait_for(reached, timeout=timeout, what=f"an idle {action}", interval=0.25)
        return seen

    def get(self, name: str) -> Experiment:
        with self.store.new_uow() as uow:
            return uow.experiments.get_by_name(name)


def pod(exp: Experiment, attempt: int = 1) -> str:
    return f"expbot-{exp.id[:8]}-a{attempt}-x7k2p"


def gpu_series(dcgm: DcgmExporter, exp: Experiment, values: dict[str, float], metric: str = ENGINE) -> None:
    for gpu, value in values.items():
        dcgm.set(metric, value, gpu=gpu, UUID=f"GPU-{exp.id[:8]}-{gpu}", Hostname="node-1",
                 exported_pod=pod(exp), exported_namespace="ml")


@pytest.fixture
def stack(sqlite_store: Store, prometheus: PrometheusServer) -> Iterator[IdleStack]:
    stack = IdleStack(sqlite_store, prometheus.url)
    yield stack
    stack.metrics.close()


def test_idle_gpus_are_warned_and_keep_snoozes_the_warning(stack, dcgm):
    exp = stack.running("idle-keep")
    gpu_series(dcgm, exp, {"0": 0.0, "1": 0.0})
    seen = stack.run_until(IdleAction.WARN)
    assert [o.action for o in seen if o.error == ""] == [IdleAction.WARN]
    with stack.store.new_uow() as uow:
        assert [e.kind for e in uow.outbox.for_experiment(exp.id)][-1] == "IdleWarning"
    stack.bus.handle(KeepExperiment(name="idle-keep", by="UANA", hours=9 / 3600))
    # Longer than the grace (3 s) yet well inside the Keep (9 s), even if a check stalls.
    during = stack.run_for(4.5)
    assert [o.action for o in during] == [] and stack.get("idle-keep").state == State.RUNNING
    stack.run_until(IdleAction.WARN, timeout=30)  # the Keep ran out and it is still idle
    with stack.store.new_uow() as uow:
        assert [e["actor"] for e in uow.audit.entries(action="idle-keep")] == ["UANA"]


def test_idle_past_the_grace_is_stopped(stack, dcgm):
    exp = stack.running("idle-stop")
    gpu_series(dcgm, exp, {"0": 0.0, "1": 0.004})  # 0.4 %: under the 1 % threshold
    seen = stack.run_until(IdleAction.STOP)
    assert [o.action for o in seen] == [IdleAction.WARN, IdleAction.STOP]
    # The job asks for the stop; serve's supervisor carries it out (tests/unit/test_idle_job.py does that part).
    stopped = stack.get("idle-stop")
    assert stopped.state == State.STOPPING and stopped.stopped_by == "expbot" and "no answer" in stopped.state_reason
    with stack.store.new_uow() as uow:
        assert [e["experiment_id"] for e in uow.audit.entries(action="idle-stop")] == [exp.id]
    assert stack.states.get(exp.id).idle_gpu_seconds > 2 * 6  # two GPUs, idle for 7 s or so


def test_a_busy_gpu_is_never_warned(stack, dcgm):
    exp = stack.running("half-busy")
    gpu_series(dcgm, exp, {"0": 0.0, "1": 0.35})
    assert stack.run_for(9) == []
    assert stack.get("half-busy").state == State.RUNNING
    assert stack.states.get(exp.id).idle_since is None


def test_activity_clears_a_warning(stack, dcgm):
    exp = stack.running("wakes-up", gpus=1)
    gpu_series(dcgm, exp, {"0": 0.0})
    stack.run_until(IdleAction.WARN)
    gpu_series(dcgm, exp, {"0": 0.9})
    stack.run_until(IdleAction.RESET, timeout=10)
    assert stack.states.get(exp.id).warned_at is None and stack.get("wakes-up").state == State.RUNNING


def test_gpu_util_is_the_fallback_without_profiling_metrics(stack, dcgm):
    exp = stack.running("old-exporter")
    gpu_series(dcgm, exp, {"0": 0.0, "1": 37.0}, metric=UTIL)
    start = datetime.now(timezone.utc).replace(microsecond=0)
    found = wait_for(lambda: (s := stack.metrics.samples(exp.id, 1, start, datetime.now(timezone.utc)))
                     and len(s) == 2 and s, what="both GPUs' samples", interval=0.25)
    peaks = {gpu: max(x.max_util for x in samples) for gpu, samples in found.items()}
    assert peaks == {f"GPU-{exp.id[:8]}-0": 0.0, f"GPU-{exp.id[:8]}-1": 37.0}  # already in percent
    gpu_series(dcgm, exp, {"0": 0.0, "1": 0.0}, metric=UTIL)
    stack.run_until(IdleAction.WARN)


def test_profiling_ratio_becomes_percent_and_other_attempts_do_not_match(stack, dcgm):
    exp = stack.running("scaled")
    gpu_series(dcgm, exp, {"0": 0.25})
    dcgm.set(ENGINE, 0.0, gpu="1", UUID="GPU-other", Hostname="node-1", exported_pod=pod(exp, 10),
             exported_namespace="ml")
    start = datetime.now(timezone.utc).replace(microsecond=0)
    time.sleep(2.5)
    found = wait_for(lambda: stack.metrics.samples(exp.id, 1, start, datetime.now(timezone.utc)),
                     what="samples", interval=0.25)
    assert list(found) == [f"GPU-{exp.id[:8]}-0"]  # attempt 10's pod is not attempt 1's
    assert {s.max_util for s in found[f"GPU-{exp.id[:8]}-0"]} == {25.0}
    assert all(s.at.tzinfo is not None for s in found[f"GPU-{exp.id[:8]}-0"])
    ns = PrometheusGpuMetrics(stack.metrics.base_url, step=WINDOW, selector=pod_selector(namespace="other"))
    assert ns.samples(exp.id, 1, start, datetime.now(timezone.utc)) == {}


def test_prometheus_errors_become_metrics_unavailable(prometheus):
    now = datetime.now(timezone.utc)
    closed = PrometheusGpuMetrics(f"http://127.0.0.1:{_free_port()}", step=WINDOW, timeout=2)
    with pytest.raises(MetricsUnavailable, match="did not answer"):
        closed.samples("abcdef123456", 1, now - timedelta(minutes=1), now)
    bad_query = PrometheusGpuMetrics(prometheus.url, step=WINDOW, selector=lambda e, a: 'pod=~"(unclosed"')
    with pytest.raises(MetricsUnavailable, match=r"refused .*\(HTTP 400\): .*parse error"):
        bad_query.samples("abcdef123456", 1, now - timedelta(minutes=1), now)

    class NotPrometheus(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html>a login page</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        html = PrometheusGpuMetrics(f"http://127.0.0.1:{server.server_address[1]}", step=WINDOW)
        with pytest.raises(MetricsUnavailable):
            html.samples("abcdef123456", 1, now - timedelta(minutes=1), now)
    finally:
        server.shutdown()
        server.server_close()
