"""DCGM Xid evidence on fakes: a rise during a failed attempt makes it a hardware fault; no evidence changes nothing."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from core.metrics import XidError, xid_rises
from core.model import State
from core.policy import Backoff
from core.supervisor import Supervisor
from tests.fakes.metrics import FakeGpuMetrics
from tests.unit.test_supervisor import start

T = timedelta(minutes=1)


@pytest.fixture
def metrics(world) -> FakeGpuMetrics:
    """The world's supervisor, rebuilt with the fake as its Xid evidence."""
    metrics = FakeGpuMetrics()
    world.supervisor = Supervisor(world.uow, world.backend, world.clock, rng=random.Random(0), stop_in_background=False,
                                  backoff=Backoff(base=timedelta(seconds=10), jitter=0.0), xids=metrics)
    return metrics


def test_xid_rises_are_new_non_zero_values_after_the_first_reading():
    t0 = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    readings = [(t0, 0.0), (t0 + T, 0.0), (t0 + 2 * T, 79.0), (t0 + 3 * T, 79.0), (t0 + 4 * T, 0.0),
                (t0 + 5 * T, 48.0), (t0 + 6 * T, float("nan"))]
    assert xid_rises("3", reversed(readings), node="n1") == [XidError("3", 79, t0 + 2 * T, "n1"),
                                                             XidError("3", 48, t0 + 5 * T, "n1")]
    assert xid_rises("3", [(t0, 79.0), (t0 + T, 79.0)]) == []  # an old Xid the GPU still shows
    assert XidError("3", 79, t0, "gpu-node-7").line() == "DCGM reported Xid 79 on GPU 3 of gpu-node-7 during the attempt"


def test_an_xid_rise_during_the_attempt_makes_its_exit_1_a_hardware_fault(world, metrics):
    exp = start(world, "exp --max-restarts 0 --max-preemptions 3 -- python train.py")
    metrics.set_xid(exp.id, 1, "3", 0, world.clock.now())
    world.clock.advance(minutes=5)
    metrics.set_xid(exp.id, 1, "3", 79, world.clock.now())
    world.clock.advance(minutes=1)
    world.backend.write_log(exp.id, 1, "Traceback (most recent call last):\nRuntimeError: CUDA error: unknown error\n")
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    first = exp.attempts[0]
    assert first.failure_class == "hardware" and exp.state == State.RESTARTING
    assert exp.infra_restarts == 1 and exp.user_restarts == 0
    assert first.reason == ("hardware fault (Xid 79: GPU has fallen off the bus): "
                            "DCGM reported Xid 79 on GPU 3 during the attempt")
    [(eid, attempt, since, until)] = metrics.xid_calls
    assert (eid, attempt, since, until) == (exp.id, 1, first.started_at, world.clock.now())


def test_an_unlisted_xid_is_named_by_the_dcgm_signature(world, metrics):
    exp = start(world, "exp --max-restarts 0 -- python train.py")
    metrics.set_xid(exp.id, 1, "0", 0, world.clock.now())
    metrics.set_xid(exp.id, 1, "0", 119, world.clock.now() + T)
    world.clock.advance(minutes=2)
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    reason = world.get("exp").attempts[0].reason
    assert reason.startswith("hardware fault (Xid reported by DCGM during the attempt): DCGM reported Xid 119")


@pytest.mark.parametrize("readings", [[], [0, 0], [79, 79], [0, 13]], ids=["none", "zero", "old", "app-xid"])
def test_without_a_hardware_xid_rise_the_failure_is_the_users(world, metrics, readings):
    exp = start(world, "exp --max-restarts 0 -- python train.py")
    for n, code in enumerate(readings):
        metrics.set_xid(exp.id, 1, "0", code, world.clock.now() + n * T)
    world.clock.advance(minutes=5)
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and exp.attempts[0].failure_class == "user"


def test_a_metrics_error_never_blocks_the_decision(world, metrics, caplog):
    exp = start(world, "exp --max-restarts 0 -- python train.py")
    metrics.fail("Prometheus at http://prom:9090 did not answer")
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and exp.attempts[0].failure_class == "user"
    assert "no DCGM Xid evidence for exp attempt 1: Prometheus at http://prom:9090 did not answer" in caplog.text


def test_only_failed_exits_are_asked_about(world, metrics):
    exp = start(world, "exp -- python train.py")
    world.backend.exit(exp.id, 1, 0)
    other = start(world, "evicted -- python train.py")
    world.backend.evict(other.id, 1)
    world.supervisor.reconcile_once()
    assert world.get("exp").state == State.SUCCEEDED and metrics.xid_calls == []
