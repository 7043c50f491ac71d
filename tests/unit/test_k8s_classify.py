"""From raw Job/Pod JSON (as the API sends it) through the views to an AttemptStatus, and on to the policy."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.k8s import names
from adapters.k8s.classify import attempt_status
from adapters.k8s.views import JobView, PodView
from core.model import FailureClass
from core.policy import AttemptOutcome, classify
from core.ports import AttemptPhase, AttemptStatus

EID = "4d2c9e1f0a8b47c3b5e6d7f8091a2b3c"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
GRACE = timedelta(seconds=60)
GPU_MESSAGE = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."


# ------------------------------------------------------------------------------ builders
def ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, attempt: int, *, labelled: bool = True, **extra: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "expbot", names.EXPERIMENT: EID, names.ATTEMPT: str(attempt)}
    return {"name": name, "namespace": "ml", "resourceVersion": "4711", "uid": f"uid-{name}",
            "labels": labels if labelled else {"app": "something-else"}, **extra}


def condition(kind: str, status: str = "True", reason: str | None = None, message: str | None = None,
              at: datetime | None = None) -> dict[str, Any]:
    found = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": ts(at or NOW)}
    if reason:
        found["reason"] = reason
    if message:
        found["message"] = message
    return found


def job_raw(attempt: int = 1, *, conditions: tuple[dict[str, Any], ...] = (), suspend: bool = False,
            completed_at: datetime | None = None, deleting: bool = False, active: int = 0,
            labelled: bool = True) -> dict[str, Any]:
    extra: dict[str, Any] = {"creationTimestamp": ts(NOW - timedelta(minutes=30))}
    if deleting:
        extra["deletionTimestamp"] = ts(NOW - timedelta(seconds=5))
    status: dict[str, Any] = {"conditions": list(conditions)} if conditions else {}
    if active:
        status["active"] = active
    if completed_at:
        status |= {"completionTime": ts(completed_at), "succeeded": 1}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": meta(names.job_name(EID, attempt), attempt, labelled=labelled, **extra),
        "spec": {"suspend": suspend, "backoffLimit": 0, "template": {}},
        "status": status,
    }


def running(at: datetime) -> dict[str, Any]:
    return {"running": {"startedAt": ts(at)}}


def terminated(code: int, reason: str, at: datetime = NOW, message: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"exitCode": code, "reason": reason, "startedAt": ts(at - timedelta(minutes=9)),
                             "finishedAt": ts(at), "containerID": "containerd://abc"}
    if message:
        found["message"] = message
    return {"terminated": found}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def pod_raw(attempt: int = 1, *, phase: str = "Pending", state: dict[str, Any] | None = None,
            conditions: tuple[dict[str, Any], ...] = (), reason: str | None = None, message: str | None = None,
            created: datetime = NOW - timedelta(minutes=10), start_time: datetime | None = None,
            suffix: str = "x7k2p", labelled: bool = True, node: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": list(conditions)}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if start_time:
        status["startTime"] = ts(start_time)
    if state is not None:
        status["containerStatuses"] = [{"name": "train", "ready": "running" in state, "restartCount": 0,
                                        "image": "img", "imageID": "", "state": state}]
    name = f"{names.job_name(EID, attempt)}-{suffix}"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": meta(name, attempt, labelled=labelled, creationTimestamp=ts(created)),
            "spec": {"restartPolicy": "Never", "containers": [{"name": "train", "image": "img"}],
                     **({"nodeName": node} if node else {})},
            "status": status}


def status_of(job: dict[str, Any] | None, pod: dict[str, Any] | None, *, pod_deleted: bool = False,
              now: datetime = NOW) -> AttemptStatus | None:
    job_view = JobView.from_raw(job) if job is not None else None
    pod_view = PodView.from_raw(pod, deleted=pod_deleted) if pod is not None else None
    assert (job is None) == (job_view is None) and (pod is None) == (pod_view is None)
    return attempt_status(job_view, pod_view, now, GRACE)


def failure_class(world, status: AttemptStatus) -> FailureClass:
    """How the policy sorts this status, built into an outcome the way the supervisor does it."""
    world.launch("exp -- python train.py")
    outcome = AttemptOutcome(exit_code=status.exit_code, reason=status.reason, infra=status.infra,
                             lost=status.phase == AttemptPhase.LOST, oom_killed=status.oom_killed)
    return classify(world.get("exp"), outcome)[0]


def disrupted_pod(reason: str, code: int) -> dict[str, Any]:
    return pod_raw(phase="Failed", state=terminated(code, "Error"),
                   conditions=(condition("DisruptionTarget", reason=reason, message="taken away"),))


# ------------------------------------------------------------------------------ the cases
def test_never_heard_of_it():
    assert status_of(None, None) is None


def test_job_without_a_pod_yet_is_starting():
    found = status_of(job_raw(active=1), None)
    assert found is not None and found.phase == AttemptPhase.STARTING and not found.infra


def test_pod_the_scheduler_cannot_place_is_queued_with_the_schedulers_message():
    pod = pod_raw(conditions=(condition("PodScheduled", "False", "Unschedulable", GPU_MESSAGE),))
    found = status_of(job_raw(active=1), pod)
    assert found.phase == AttemptPhase.QUEUED and GPU_MESSAGE in found.reason


def test_scheduled_but_creating_container_is_starting():
    pod = pod_raw(state=waiting("ContainerCreating"), conditions=(condition("PodScheduled"),))
    assert status_of(job_raw(active=1), pod).phase == AttemptPhase.STARTING


def test_running_pod_started_when_its_container_did():
    container_start = NOW - timedelta(minutes=3)
    pod = pod_raw(phase="Running", state=running(container_start), start_time=NOW - timedelta(minutes=4))
    found = status_of(job_raw(active=1), pod)
    assert found.phase == AttemptPhase.RUNNING and found.started_at == container_start


def test_succeeded_pod_exits_zero():
    pod = pod_raw(phase="Succeeded", state=terminated(0, "Completed", at=NOW - timedelta(seconds=7)))
    found = status_of(job_raw(completed_at=NOW, conditions=(condition("Complete"),)), pod)
    assert (found.phase, found.exit_code, found.infra) == (AttemptPhase.EXITED, 0, False)
    assert found.ended_at == NOW - timedelta(seconds=7)


def test_complete_job_whose_pod_is_gone_exits_zero():
    done = NOW - timedelta(minutes=2)
    found = status_of(job_raw(completed_at=done, conditions=(condition("Complete", at=done),)), None)
    assert (found.phase, found.exit_code, found.ended_at) == (AttemptPhase.EXITED, 0, done)


def test_container_exit_1_is_the_users_error(world):
    pod = pod_raw(phase="Failed", state=terminated(1, "Error", message="ValueError: bad lr"))
    found = status_of(job_raw(conditions=(condition("Failed", reason="BackoffLimitExceeded"),)), pod)
    assert (found.phase, found.exit_code, found.infra, found.oom_killed) == (AttemptPhase.EXITED, 1, False, False)
    assert "ValueError: bad lr" in found.reason
    assert failure_class(world, found) == FailureClass.USER


def test_oom_killed_is_the_users_error_even_with_exit_137(world):
    found = status_of(job_raw(active=1), pod_raw(phase="Failed", state=terminated(137, "OOMKilled")))
    assert found.phase == AttemptPhase.EXITED and found.exit_code == 137
    assert found.oom_killed and not found.infra and "OOMKilled" in found.reason
    assert failure_class(world, found) == FailureClass.USER


@pytest.mark.parametrize("reason", [
    "EvictionByEvictionAPI", "PreemptionByScheduler", "DeletionByTaintManager", "DeletionByPodGC",
])
@pytest.mark.parametrize("code", [137, 143])
def test_disrupted_pods_are_infra(world, reason, code):
    found = status_of(job_raw(active=1), disrupted_pod(reason, code))
    assert found.phase == AttemptPhase.EXITED and found.exit_code == code
    assert found.infra and not found.oom_killed and reason in found.reason
    assert failure_class(world, found) == FailureClass.INFRA


def test_exit_143_without_a_disruption_is_not_flagged_infra_by_the_backend():
    found = status_of(job_raw(active=1), pod_raw(phase="Failed", state=terminated(143, "Error")))
    assert found.phase == AttemptPhase.EXITED and not found.infra


def test_evicted_pod_with_a_terminated_container_is_infra(world):
    pod = pod_raw(phase="Failed", reason="Evicted", message="The node was low on resource: memory.",
                  state=terminated(137, "Error"))
    found = status_of(job_raw(active=1), pod)
    assert found.phase == AttemptPhase.EXITED and found.infra and "Evicted" in found.reason
    assert failure_class(world, found) == FailureClass.INFRA


def test_evicted_pod_without_container_state_is_lost_infra(world):
    pod = pod_raw(phase="Failed", reason="Evicted", message="The node was low on resource: ephemeral-storage.")
    found = status_of(job_raw(active=1), pod)
    assert found.phase == AttemptPhase.LOST and found.infra and found.exit_code is None
    assert "Evicted" in found.reason and "ephemeral-storage" in found.reason and found.ended_at == NOW
    assert failure_class(world, found) == FailureClass.INFRA


def test_pod_deleted_before_it_finished_is_lost_infra():
    pod = pod_raw(phase="Running", state=running(NOW - timedelta(minutes=5)))
    found = status_of(job_raw(active=1), pod, pod_deleted=True)
    assert found.phase == AttemptPhase.LOST and found.infra
    assert found.started_at == NOW - timedelta(minutes=5)
    assert status_of(job_raw(active=1), pod).phase == AttemptPhase.RUNNING  # the same pod, not deleted


def test_job_deadline_exceeded_ends_at_max_runtime():
    at = NOW - timedelta(seconds=3)
    job = job_raw(conditions=(condition("Failed", reason="DeadlineExceeded",
                                        message="Job was active longer than specified deadline", at=at),))
    for pod in (None, pod_raw(phase="Failed", state=terminated(143, "Error")),
                disrupted_pod("DeletionByTaintManager", 137)):
        found = status_of(job, pod)
        assert found.phase == AttemptPhase.EXITED and found.deadline_exceeded, pod
        assert found.ended_at == at and not found.needs_cleanup


def test_job_deadline_decided_but_not_yet_failed_ends_at_max_runtime_not_as_a_kill(world):
    # Kubernetes >= 1.31: at the deadline the Job gets FailureTarget, then its pod is deleted (exit
    # 143), and Failed comes only after the pod is gone. Seen at the exit, it was "killed by signal
    # 15": an infrastructure restart (found by the KWOK calibration run: 29 in one run).
    job = job_raw(conditions=(condition("FailureTarget", reason="DeadlineExceeded",
                                        message="Job was active longer than specified deadline"),))
    for pod in (pod_raw(phase="Pending", state=waiting("ContainerCreating"), node="spot-2"),
                pod_raw(phase="Failed", state=terminated(143, "Error"), node="spot-2")):
        found = status_of(job, pod)
        assert found.phase == AttemptPhase.EXITED and found.deadline_exceeded, pod
    failed_job = job_raw(conditions=(condition("FailureTarget", reason="BackoffLimitExceeded"),))
    found = status_of(failed_job, pod_raw(phase="Failed", state=terminated(1, "Error", message="KeyError")))
    assert found.exit_code == 1 and not found.deadline_exceeded and failure_class(world, found) == FailureClass.USER
    assert status_of(job_raw(conditions=(condition("FailureTarget", "False"),), active=1),
                     pod_raw(phase="Running", state=running(NOW))).phase == AttemptPhase.RUNNING


@pytest.mark.parametrize("state", [None, {"terminated": {"exitCode": 137, "reason": "Error"}},
                                   running(NOW - timedelta(hours=1))])
def test_pod_ended_at_its_deadline_by_the_kubelet_is_max_runtime(state):
    pod = pod_raw(phase="Failed", reason="DeadlineExceeded", state=state,
                  message="Pod was active on the node longer than the specified deadline")
    found = status_of(job_raw(active=1), pod)
    assert found.phase == AttemptPhase.EXITED and found.deadline_exceeded and not found.infra


def test_job_failed_with_its_pod_gone_is_lost_infra(world):
    found = status_of(job_raw(conditions=(condition("Failed", reason="BackoffLimitExceeded",
                                                    message="Job has reached the specified backoff limit"),)), None)
    assert found.phase == AttemptPhase.LOST and found.infra and not found.deadline_exceeded
    assert "BackoffLimitExceeded" in found.reason
    assert failure_class(world, found) == FailureClass.INFRA


def test_a_false_failed_condition_is_ignored():
    job = job_raw(active=1, conditions=(condition("Failed", "False", reason="BackoffLimitExceeded"),))
    assert JobView.from_raw(job).failed_reason is None
    assert status_of(job, None).phase == AttemptPhase.STARTING


def test_image_pull_backoff_waits_out_the_grace_then_is_a_users_error(world):
    message = 'Back-off pulling image "ghcr.io/acme/trian:1.2"'
    young = pod_raw(state=waiting("ImagePullBackOff", message), created=NOW - GRACE + timedelta(seconds=1))
    found = status_of(job_raw(active=1), young)
    assert found.phase == AttemptPhase.STARTING and not found.needs_cleanup
    old = pod_raw(state=waiting("ImagePullBackOff", message), created=NOW - GRACE)
    found = status_of(job_raw(active=1), old)
    assert found.phase == AttemptPhase.EXITED and found.needs_cleanup and not found.infra
    assert "ImagePullBackOff" in found.reason and "trian" in found.reason and found.exit_code is None
    assert failure_class(world, found) == FailureClass.USER


@pytest.mark.parametrize("reason", ["InvalidImageName", "ErrImageNeverPull"])
def test_hopeless_images_fail_at_once(reason):
    pod = pod_raw(state=waiting(reason, "couldn't parse image reference"), created=NOW)
    found = status_of(job_raw(active=1), pod)
    assert found.phase == AttemptPhase.EXITED and found.needs_cleanup and reason in found.reason


def test_job_deleted_under_a_running_pod_is_lost_and_cleaned_up():
    pod = pod_raw(phase="Running", state=running(NOW - timedelta(minutes=1)))
    found = status_of(job_raw(active=1, deleting=True), pod)
    assert found.phase == AttemptPhase.LOST and found.infra and found.needs_cleanup
    assert JobView.from_raw(job_raw(active=1, deleting=True)).deleting
    assert not JobView.from_raw(job_raw(active=1)).deleting


def test_pod_without_its_job_is_lost_but_needs_no_cleanup():
    found = status_of(None, pod_raw(phase="Running", state=running(NOW)))
    assert found.phase == AttemptPhase.LOST and found.infra and not found.needs_cleanup


def test_suspended_job_waits_in_the_cluster_queue():
    found = status_of(job_raw(suspend=True), None)
    assert found.phase == AttemptPhase.QUEUED and found.reason
    assert status_of(job_raw(suspend=False), None).phase == AttemptPhase.STARTING


# --------------------------------------------------------------------------------- views
def test_objects_that_are_not_expbot_attempts_have_no_view():
    assert JobView.from_raw(job_raw(labelled=False)) is None
    assert PodView.from_raw(pod_raw(labelled=False)) is None
    bad = job_raw()
    bad["metadata"]["labels"][names.ATTEMPT] = "one"
    assert JobView.from_raw(bad) is None
    assert JobView.from_raw({"metadata": {}}) is None and PodView.from_raw({}) is None


def test_views_read_the_attempt_key_and_times():
    job = JobView.from_raw(job_raw(3, completed_at=NOW, conditions=(condition("Complete"),)))
    assert (job.experiment_id, job.attempt, job.name) == (EID, 3, names.job_name(EID, 3))
    assert job.complete and job.finished_at == NOW and job.resource_version == "4711"
    pod = PodView.from_raw(pod_raw(2, created=NOW - timedelta(hours=1)))
    assert (pod.experiment_id, pod.attempt) == (EID, 2) and pod.created_at == NOW - timedelta(hours=1)
    assert pod.name.startswith(names.job_name(EID, 2) + "-")


# ---------------------------------------------------------------------- failure evidence
XID_79 = "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus."
LOG_TAIL = f"step 1200 loss 2.31\nstep 1210 loss 2.30\n{XID_79}\nRuntimeError: CUDA error: unspecified launch failure\n"


def outcome_of(status: AttemptStatus) -> AttemptOutcome:
    """The outcome the supervisor builds: the termination message is the log tail when there is one."""
    return AttemptOutcome(exit_code=status.exit_code, reason=status.reason, infra=status.infra,
                          lost=status.phase == AttemptPhase.LOST, oom_killed=status.oom_killed,
                          log_tail=status.message, node=status.node)


def test_the_termination_message_and_node_are_reported_and_the_policy_reads_them(world):
    pod = pod_raw(phase="Failed", state=terminated(1, "Error", message=LOG_TAIL), node="gpu-a100-3")
    found = status_of(job_raw(conditions=(condition("Failed", reason="BackoffLimitExceeded"),)), pod)
    assert (found.phase, found.exit_code, found.infra) == (AttemptPhase.EXITED, 1, False)  # facts, no verdict
    assert found.message == LOG_TAIL and found.node == "gpu-a100-3"
    assert found.reason == "RuntimeError: CUDA error: unspecified launch failure"  # its last line, not 80 lines
    world.launch("exp -- python train.py")
    failure, reason = classify(world.get("exp"), outcome_of(found))
    assert failure == FailureClass.HARDWARE and "Xid 79" in reason and "fallen off the bus" in reason


def test_an_ambiguous_cuda_error_in_the_message_stays_the_users(world):
    message = "RuntimeError: CUDA error: an illegal memory access was encountered"
    found = status_of(job_raw(active=1), pod_raw(phase="Failed", state=terminated(1, "Error", message=message),
                                                  node="gpu-a100-0"))
    assert found.message == message and message in found.reason
    world.launch("exp -- python train.py")
    assert classify(world.get("exp"), outcome_of(found))[0] == FailureClass.USER


def test_no_message_is_an_empty_one():
    found = status_of(job_raw(active=1), pod_raw(phase="Failed", state=terminated(1, "Error"), node="n1"))
    assert found.message == "" and found.reason == "" and found.node == "n1"


@pytest.mark.parametrize("pod", [
    pod_raw(phase="Running", state=running(NOW), node="gpu-h100-1"),
    pod_raw(phase="Failed", reason="Evicted", message="low on memory", node="gpu-h100-1"),
    pod_raw(phase="Failed", state=terminated(137, "OOMKilled"), node="gpu-h100-1"),
    disrupted_pod("DeletionByTaintManager", 137) | {"spec": {"nodeName": "gpu-h100-1"}},
], ids=["running", "evicted", "oom", "disrupted"])
def test_the_node_is_known_while_it_runs_and_after_it_ended(pod):
    assert status_of(job_raw(active=1), pod).node == "gpu-h100-1"
    assert status_of(job_raw(active=1), pod, pod_deleted=True).node == "gpu-h100-1"


def test_no_node_before_the_pod_is_placed():
    pending = pod_raw(conditions=(condition("PodScheduled", "False", "Unschedulable", GPU_MESSAGE),))
    assert status_of(job_raw(active=1), pending).node is None
    assert status_of(job_raw(active=1), None).node is None
