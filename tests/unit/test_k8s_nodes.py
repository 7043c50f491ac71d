"""Node evidence: a node that lost GPUs while an attempt ran makes its non-zero exit infrastructure."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.k8s.nodes import NodeHealth, NodeView, with_node_evidence
from core.model import FailureClass
from core.policy import INFRASTRUCTURE, AttemptOutcome, classify
from core.ports import AttemptPhase, AttemptStatus

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
STARTED = T0 + timedelta(minutes=1)  # when the attempt's pod was created


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


def node(name: str, allocatable: int | None = 8, capacity: int | None = 8) -> dict[str, Any]:
    status: dict[str, Any] = {"capacity": {"cpu": "64"}, "allocatable": {"cpu": "64"}}
    if capacity is not None:
        status["capacity"]["nvidia.com/gpu"] = str(capacity)
    if allocatable is not None:
        status["allocatable"]["nvidia.com/gpu"] = str(allocatable)
    return {"metadata": {"name": name}, "status": status}


def failed(**changes: Any) -> AttemptStatus:
    fields: dict[str, Any] = {"phase": AttemptPhase.EXITED, "exit_code": 1, "reason": "RuntimeError: CUDA error",
                              "node": "gpu-a100-3", "ended_at": T0 + timedelta(minutes=30), "message": "RuntimeError: CUDA error"}
    return AttemptStatus(**(fields | changes))


@pytest.fixture
def health() -> tuple[NodeHealth, Clock]:
    clock = Clock()
    found = NodeHealth(clock)
    found.replace("nodes", [node("gpu-a100-3"), node("gpu-a100-4"), node("cpu-1", None, None)])
    return found, clock


def test_views_read_the_gpu_counts():
    assert NodeView.from_raw(node("n", 7, 8)) == NodeView("n", 8, 7) and NodeView.from_raw(node("n", 7, 8)).short
    assert not NodeView.from_raw(node("n")).short and not NodeView.from_raw(node("c", None, None)).short
    assert NodeView.from_raw(node("n", None, 8)) == NodeView("n", 8, 8)  # no allocatable reported: not short
    assert NodeView.from_raw({"metadata": {}}) is None


def test_a_node_that_lost_a_gpu_while_it_ran_makes_the_failure_infrastructure(health):
    nodes, clock = health
    clock.at = T0 + timedelta(minutes=20)
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 7, 8))
    found = with_node_evidence(failed(), nodes, STARTED)
    assert found.infra and found.exit_code == 1 and found.node == "gpu-a100-3"
    assert found.reason == ("node gpu-a100-3 lost GPUs while it ran (7 of 8 nvidia.com/gpu allocatable): "
                            "RuntimeError: CUDA error")
    assert found.message == "RuntimeError: CUDA error"  # the evidence is still there for the thread
    assert not with_node_evidence(failed(node="gpu-a100-4"), nodes, STARTED).infra  # another node: no evidence


def test_a_drop_seen_before_the_attempt_started_is_no_evidence(health):
    nodes, clock = health
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 7, 8))  # at T0, the attempt started at T0+1min
    clock.at = T0 + timedelta(minutes=20)
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 6, 8))  # still short: since T0
    assert with_node_evidence(failed(), nodes, STARTED) == failed()
    assert with_node_evidence(failed(), nodes, None) == failed()  # no pod creation time: no evidence


def test_a_node_short_at_the_first_list_is_no_evidence_until_it_recovers_and_drops_again():
    clock = Clock()
    nodes = NodeHealth(clock)
    nodes.replace("nodes", [node("gpu-a100-3", 7, 8)])
    clock.at = T0 + timedelta(minutes=10)
    assert not with_node_evidence(failed(), nodes, STARTED).infra
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 8, 8))
    clock.at = T0 + timedelta(minutes=11)
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 7, 8))
    assert with_node_evidence(failed(), nodes, STARTED).infra


def test_a_relist_dates_a_new_drop_at_the_relist_and_keeps_an_older_one(health):
    nodes, clock = health
    clock.at = T0 + timedelta(minutes=5)
    nodes.replace("nodes", [node("gpu-a100-3", 7, 8), node("gpu-a100-4")])  # missed while the watch was down
    assert with_node_evidence(failed(), nodes, STARTED).infra
    clock.at = T0 + timedelta(hours=2)
    nodes.replace("nodes", [node("gpu-a100-3", 7, 8)])
    assert nodes.lost_gpus("gpu-a100-3", T0 + timedelta(minutes=5)) is not None  # first seen at 12:05, not 14:00


def test_a_recovered_or_deleted_node_is_no_evidence(health):
    nodes, clock = health
    clock.at = T0 + timedelta(minutes=20)
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 7, 8))
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 8, 8))
    assert not with_node_evidence(failed(), nodes, STARTED).infra
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 7, 8))
    nodes.apply("nodes", "DELETED", node("gpu-a100-3", 7, 8))
    assert not with_node_evidence(failed(), nodes, STARTED).infra


@pytest.mark.parametrize("status", [
    failed(exit_code=0), failed(exit_code=None, phase=AttemptPhase.LOST, infra=True),
    failed(oom_killed=True, exit_code=137), failed(deadline_exceeded=True), failed(node=None),
    failed(phase=AttemptPhase.RUNNING, exit_code=None),
    failed(infra=True, reason="DisruptionTarget: EvictionByEvictionAPI"),
], ids=["success", "lost", "oom", "deadline", "no-node", "running", "already-infra"])
def test_only_a_plain_failure_takes_node_evidence(health, status):
    nodes, clock = health
    clock.at = T0 + timedelta(minutes=20)
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 0, 8))
    assert with_node_evidence(status, nodes, STARTED) == status
    assert with_node_evidence(replace(failed(), node="gpu-a100-3"), nodes, STARTED).infra


def test_the_policy_makes_it_an_infrastructure_restart(health, world):
    nodes, clock = health
    clock.at = T0 + timedelta(minutes=20)
    nodes.apply("nodes", "MODIFIED", node("gpu-a100-3", 7, 8))
    found = with_node_evidence(failed(), nodes, STARTED)
    world.launch("exp -- python train.py")
    outcome = AttemptOutcome(exit_code=found.exit_code, reason=found.reason, infra=found.infra,
                             log_tail=found.message, node=found.node)
    failure, reason = classify(world.get("exp"), outcome)
    assert failure in INFRASTRUCTURE and failure == FailureClass.INFRA and "gpu-a100-3" in reason
