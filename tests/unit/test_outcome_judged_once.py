"""An attempt's end is judged once, in core.policy: the Kubernetes adapter reports facts (exit code,
OOMKilled, the cluster's disruption) and no verdict of its own on 137/143."""
from __future__ import annotations

import pytest

from core.model import FailureClass
from core.policy import AttemptOutcome, classify, ended_by_cluster
from core.ports import AttemptPhase
from tests.unit.test_k8s_classify import condition, job_raw, pod_raw, status_of, terminated


def disrupted(code: int, container_reason: str = "Error"):
    return pod_raw(phase="Failed", state=terminated(code, container_reason),
                   conditions=(condition("DisruptionTarget", reason="PreemptionByScheduler", message="taken away"),))


def judged(world, status) -> FailureClass:
    """As the reconciler builds the outcome: every fact, the disruption included."""
    world.launch("exp -- python train.py")
    outcome = AttemptOutcome(exit_code=status.exit_code, reason=status.reason, infra=status.infra,
                             disruption=status.disruption, lost=status.phase == AttemptPhase.LOST,
                             oom_killed=status.oom_killed)
    return classify(world.get("exp"), outcome)[0]


@pytest.mark.parametrize("code,container_reason,expected", [
    (137, "Error", FailureClass.INFRA),  # killed as the cluster took the pod away
    (143, "Error", FailureClass.INFRA),
    (0, "Completed", FailureClass.NONE),  # it had finished: the disruption took nothing
    (137, "OOMKilled", FailureClass.USER),  # its own memory, whoever then ended the pod
])
def test_a_disruption_is_reported_as_a_fact_and_weighed_by_the_policy(world, code, container_reason, expected):
    found = status_of(job_raw(active=1), disrupted(code, container_reason))
    assert found.phase == AttemptPhase.EXITED and found.exit_code == code
    assert "PreemptionByScheduler" in found.disruption  # the fact, whatever the exit code
    assert judged(world, found) == expected


def test_without_a_disruption_137_is_judged_by_the_policy_alone(world):
    found = status_of(job_raw(active=1), pod_raw(phase="Failed", state=terminated(137, "Error")))
    assert not found.infra and not found.disruption  # the adapter says nothing about who killed it
    assert judged(world, found) == FailureClass.INFRA  # core.policy: killed by a signal, not OOM


def test_the_infra_flag_alone_is_the_backends_word():
    assert ended_by_cluster(AttemptOutcome(exit_code=0, infra=True))
    assert not ended_by_cluster(AttemptOutcome(exit_code=0, infra=True, disruption="DisruptionTarget"))
    assert not ended_by_cluster(AttemptOutcome(exit_code=137, infra=True, oom_killed=True, disruption="Evicted"))
    assert ended_by_cluster(AttemptOutcome(exit_code=143, infra=True, disruption="Evicted"))
