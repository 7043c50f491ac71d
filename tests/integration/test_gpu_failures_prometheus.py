"""GPU-cluster failures against a real Prometheus scraping a DCGM-style exporter (#12), with 2-second windows:
an Xid rise during an attempt makes its exit-1 failure a hardware fault; GPUs that collapse from busy to
idle without progress restart the attempt as stuck; idle GPUs of a job that reports progress get the
idle warning instead."""
from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from adapters.clock import SystemClock
from adapters.db.engine import make_session_factory
from adapters.db.idle_states import SqlIdleStates
from adapters.metrics.prometheus import PrometheusGpuMetrics
from core import commands, handlers
from core.bus import MessageBus
from core.idle import IdleAction, IdleConfig
from core.idle_job import HangWatch, IdleOutcome, check_idle
from core.model import AttemptState, Experiment, State
from core.policy import Backoff
from core.ports import AttemptLaunch
from core.spec import ExperimentSpec
from core.supervisor import Supervisor
from tests.fakes.backend import FakeBackend
from tests.integration.conftest import Store
from tests.integration.prometheus import DcgmExporter, PrometheusServer, dcgm, prometheus  # noqa: F401
from tests.polling import wait_for

pytestmark = pytest.mark.slow

ENGINE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
XID = "DCGM_FI_DEV_XID_ERRORS"
WINDOW = timedelta(seconds=2)
# Stuck after 4 s of idle GPUs; the idle warning only after 8 s, and no idle stop during a test.
CONFIG = IdleConfig(
    sample_window=WINDOW, warm_up=timedelta(0), idle_for=timedelta(seconds=8), grace=timedelta(minutes=10),
    check_every=timedelta(seconds=1), lookback=timedelta(seconds=20), hang_timeout=timedelta(seconds=4),
)


class Cluster:
    """SQLite, a scripted backend, the supervisor with Prometheus as its Xid evidence, and the idle job."""

    def __init__(self, store: Store, prometheus_url: str) -> None:
        assert store.engine is not None
        self.store, self.clock, self.url = store, SystemClock(), prometheus_url
        self.backend = FakeBackend(gpus=8)
        self.metrics = PrometheusGpuMetrics(prometheus_url, step=WINDOW)
        self.supervisor = Supervisor(store.new_uow, self.backend, self.clock, stop_in_background=False,
                                     backoff=Backoff(base=timedelta(seconds=30)), rng=random.Random(0),
                                     xids=self.metrics)
        self.states = SqlIdleStates(make_session_factory(store.engine))
        self.bus = MessageBus(store.new_uow, {commands.StopExperiment: functools.partial(
            handlers.stop, backend=self.backend, clock=self.clock, grace=timedelta(seconds=1))})
        self.hangs = HangWatch(progress=self.progress, end_attempt=self.supervisor.end_attempt_later)

    def progress(self, experiment_id: str, attempt: int):
        status = self.backend.status(experiment_id, attempt)
        return status.last_progress_at if status else None

    def running(self, name: str, gpus: int = 2, max_restarts: int = 0) -> Experiment:
        now = self.clock.now()
        spec = ExperimentSpec.model_validate({"name": name, "command": ("python", "t.py"), "image": "py", "gpus": gpus,
                                              "max_restarts": max_restarts})
        exp = Experiment(id=uuid.uuid4().hex, spec=spec, owner="UANA", created_at=now)
        exp.launched(now)
        exp.start_attempt(None, now)
        exp.mark_running(now)
        self.store.save(exp)
        self.backend.submit(AttemptLaunch(exp.id, name, 1, spec, "UANA", None, timedelta(hours=1)))
        self.backend.run(exp.id, 1)
        return exp

    def round(self, every_round=None) -> list[IdleOutcome]:
        """The idle job once, then a supervisor pass: what serve's two threads do."""
        if every_round:
            every_round()
        outcomes = check_idle(self.store.new_uow, self.states, self.metrics, self.clock, CONFIG, self.bus, self.hangs)
        self.supervisor.reconcile_once()
        return [o for o in outcomes if o.action != IdleAction.NONE or o.error]

    def get(self, name: str) -> Experiment:
        with self.store.new_uow() as uow:
            return uow.experiments.get_by_name(name)

    def event_kinds(self, exp: Experiment) -> list[str]:
        with self.store.new_uow() as uow:
            return [e.kind for e in uow.outbox.for_experiment(exp.id)]

    def scraped(self, query: str) -> list[float]:
        """The instant values of `query` Prometheus has now."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=5).json()
        return [float(r["value"][1]) for r in reply["data"]["result"]]


def pod(exp: Experiment) -> str:
    return f"expbot-{exp.id[:8]}-a1-x7k2p"


def gpu_labels(exp: Experiment, gpu: str) -> dict[str, str]:
    return {"gpu": gpu, "UUID": f"GPU-{exp.id[:8]}-{gpu}", "Hostname": "node-1", "exported_pod": pod(exp),
            "exported_namespace": "ml"}


def utilisation(dcgm: DcgmExporter, exp: Experiment, ratio: float, gpus: tuple[str, ...] = ("0", "1")) -> None:
    for gpu in gpus:
        dcgm.set(ENGINE, ratio, **gpu_labels(exp, gpu))


@pytest.fixture
def cluster(sqlite_store: Store, prometheus: PrometheusServer) -> Iterator[Cluster]:
    cluster = Cluster(sqlite_store, prometheus.url)
    yield cluster
    cluster.metrics.close()


def busy_then_idle(cluster: Cluster, dcgm: DcgmExporter, exp: Experiment) -> None:
    """GPUs at 95 % until Prometheus has a busy window of them, then at 0."""
    utilisation(dcgm, exp, 0.95)
    wait_for(lambda: any(s.max_util > 90 for samples in cluster.metrics.samples(
        exp.id, 1, exp.attempts[0].started_at, cluster.clock.now()).values() for s in samples),
        timeout=30, what="a busy window in Prometheus", interval=0.25)
    utilisation(dcgm, exp, 0.0)


def test_an_xid_rise_during_the_attempt_makes_its_exit_1_a_hardware_fault(cluster, dcgm):
    exp = cluster.running("xid-79", max_restarts=0)
    dcgm.set(XID, 0, **gpu_labels(exp, "3"))
    wait_for(lambda: cluster.scraped(f'{XID}{{exported_pod="{pod(exp)}"}}') == [0.0], timeout=30,
             what="the Xid baseline scraped", interval=0.25)
    dcgm.set(XID, 79, **gpu_labels(exp, "3"))
    wait_for(lambda: cluster.scraped(f'{XID}{{exported_pod="{pod(exp)}"}}') == [79.0], timeout=30,
             what="Xid 79 scraped", interval=0.25)
    cluster.backend.write_log(exp.id, 1, "Traceback (most recent call last):\nRuntimeError: CUDA error: unknown error\n")
    cluster.backend.exit(exp.id, 1, 1)
    cluster.supervisor.reconcile_once()
    exp = cluster.get("xid-79")
    first = exp.attempts[0]
    assert first.failure_class == "hardware" and exp.state == State.RESTARTING  # max-restarts 0 untouched
    assert exp.infra_restarts == 1 and exp.user_restarts == 0
    assert "DCGM reported Xid 79 on GPU 3 of node-1 during the attempt" in first.reason


def test_without_an_xid_rise_the_same_failure_stays_the_users(cluster, dcgm):
    exp = cluster.running("old-xid", max_restarts=0)
    dcgm.set(XID, 79, **gpu_labels(exp, "3"))  # an Xid from before this attempt: the GPU still shows it
    wait_for(lambda: cluster.scraped(f'{XID}{{exported_pod="{pod(exp)}"}}') == [79.0], timeout=30,
             what="the old Xid scraped", interval=0.25)
    cluster.backend.exit(exp.id, 1, 1)
    cluster.supervisor.reconcile_once()
    exp = cluster.get("old-xid")
    assert exp.state == State.FAILED and exp.attempts[0].failure_class == "user"


def test_gpus_that_collapse_from_busy_to_idle_without_progress_restart_the_attempt_as_stuck(cluster, dcgm):
    exp = cluster.running("hung", gpus=2, max_restarts=0)
    busy_then_idle(cluster, dcgm, exp)
    seen: list[IdleOutcome] = []

    def restarted() -> bool:
        seen.extend(cluster.round())
        return cluster.get("hung").attempts[0].state == AttemptState.ENDED

    wait_for(restarted, timeout=40, what="the attempt ended as stuck", interval=0.25)
    exp = cluster.get("hung")
    first = exp.attempts[0]
    assert first.failure_class == "stall" and exp.state == State.RESTARTING and exp.infra_restarts == 1
    assert first.reason.startswith("stuck: GPUs idle for ") and "after running at 95%; no progress reported" in first.reason
    assert [(s[0], s[1]) for s in cluster.backend.stops] == [(exp.id, 1)]
    assert {o.action for o in seen} == {IdleAction.STUCK}  # never warned as idle
    assert "IdleWarning" not in cluster.event_kinds(exp)


def test_idle_gpus_of_a_job_that_reports_progress_get_the_idle_warning_not_a_restart(cluster, dcgm):
    exp = cluster.running("evaluating", gpus=2)
    busy_then_idle(cluster, dcgm, exp)
    seen: list[IdleOutcome] = []

    def warned() -> bool:
        seen.extend(cluster.round(every_round=lambda: cluster.backend.progress(exp.id, 1)))  # heartbeats go on
        return any(o.action == IdleAction.WARN for o in seen)

    wait_for(warned, timeout=40, what="the idle warning", interval=0.25)
    # The warning comes 4 s after a hang would have: had progress not counted, it would have been stuck.
    assert IdleAction.STUCK not in {o.action for o in seen}
    exp = cluster.get("evaluating")
    assert exp.state == State.RUNNING and len(exp.attempts) == 1 and cluster.backend.stops == []
    assert "IdleWarning" in cluster.event_kinds(exp)
