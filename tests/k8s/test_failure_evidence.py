"""Acceptance of #12 on the real control plane: a failed attempt's termination message is the evidence,
and a restart after a hardware fault avoids the node it happened on.

A pod fails the way a kubelet reports it with terminationMessagePolicy FallbackToLogsOnError:
container terminated, exit 1, its last log lines in `message` (our KWOK stage writes the annotated
message there). KWOK serves no pod logs, so whatever expbot concludes from the log lines it read from
the watched pod status, never from a log call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from adapters.k8s import names
from core.model import FailureClass, State
from tests.k8s.cluster_helpers import FAIL_STAGE, GPU_NODES, GPU_RESOURCE, GPU_TOLERATIONS, STAGE
from tests.k8s.harness import World, running_expbot
from tests.polling import wait_for

XID_79 = "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus."
ILLEGAL_ACCESS = "RuntimeError: CUDA error: an illegal memory access was encountered"
LOG_BEFORE = "step 1200 loss 2.31\nstep 1210 loss 2.30\n"
RUNS_ON = {"ready": "200ms", "complete": "1h"}  # until the test makes it fail
HOSTNAME = "kubernetes.io/hostname"


def _attempt_pod(w: World, experiment_id: str, attempt: int) -> client.V1Pod:
    selector = f"{names.EXPERIMENT}={experiment_id},{names.ATTEMPT}={attempt}"
    found: list[client.V1Pod] = []

    def placed() -> bool:
        found[:] = [p for p in w.core.list_namespaced_pod(w.namespace, label_selector=selector).items
                    if p.spec.node_name]
        return len(found) == 1

    wait_for(placed, timeout=60, what=f"attempt {attempt}'s pod on a node")
    return found[0]


def _fail(w: World, pod: client.V1Pod, exit_code: int, message: str) -> None:
    """The container ends now with this exit code, its last log lines in the termination message."""
    change = {"metadata": {
        "labels": {f"{FAIL_STAGE}.{STAGE}": "true"},
        "annotations": {
            f"{FAIL_STAGE}.{STAGE}/delay": "0s", f"{FAIL_STAGE}.{STAGE}/jitter-delay": "0s",
            f"{FAIL_STAGE}.{STAGE}/reason": "Error", f"{FAIL_STAGE}.{STAGE}/exit-code": str(exit_code),
            f"{FAIL_STAGE}.{STAGE}/message": message, f"pod-complete.{STAGE}/weight": "0",
        },
    }}
    w.core.patch_namespaced_pod(pod.metadata.name, w.namespace, change)


def _crowd(w: World, node: str) -> None:
    """A pod holding most of the node's CPU and memory: the scheduler then prefers the other node of the
    type, so that an attempt landing on a different node after a fault is the exclusion's doing."""
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crowd"},
        "spec": {"nodeName": node, "tolerations": [dict(t) for t in GPU_TOLERATIONS],
                 "containers": [{"name": "main", "image": "busybox:1.36",
                                 "resources": {"requests": {"cpu": "48", "memory": "384Gi"}}}]},
    }
    w.core.create_namespaced_pod(w.namespace, body)


def _excluded(job: client.V1Job) -> list[list[str]]:
    """The node names each required node-affinity term of the Job's pods excludes."""
    affinity = job.spec.template.spec.affinity
    required = affinity.node_affinity.required_during_scheduling_ignored_during_execution if affinity else None
    terms = required.node_selector_terms if required else []
    return [[v for e in t.match_expressions or [] if e.key == HOSTNAME and e.operator == "NotIn" for v in e.values]
            for t in terms]


def test_an_xid_79_in_the_termination_message_restarts_as_hardware_on_another_node(
    k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path,
) -> None:
    a100s = sorted(n for n, kind in GPU_NODES.items() if kind == "a100")
    assert len(a100s) >= 2, "the test needs two fake a100 nodes"
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNS_ON) as w:
        _crowd(w, a100s[1])
        exp = w.launch("fallen --gpus 1 --gpu-type a100 --max-restarts 0 --max-preemptions 3 -- python train.py")
        w.wait_state(exp.name, State.RUNNING)
        first = _attempt_pod(w, exp.id, 1)
        bad_node = first.spec.node_name
        wait_for(lambda: w.get(exp.name).attempts[0].node == bad_node, timeout=30,
                 what=f"attempt 1 recorded as running on {bad_node}")
        _fail(w, first, 1, LOG_BEFORE + XID_79 + "\n")

        wait_for(lambda: len(w.jobs(exp.id)) == 2, timeout=60, what="the second attempt's Job")
        assert _excluded(w.jobs(exp.id)[1]) == [[bad_node]]
        second = _attempt_pod(w, exp.id, 2)
        assert second.spec.node_name != bad_node
        assert w.core.read_node(second.spec.node_name).metadata.labels[HOSTNAME] != bad_node

        now = w.wait_state(exp.name, State.RUNNING)
        failed = now.attempts[0]
        assert (failed.failure_class, failed.exit_code, failed.node) == (FailureClass.HARDWARE, 1, bad_node)
        assert "Xid 79" in failed.reason and "fallen off the bus" in failed.reason
        assert now.infra_restarts == 1 and now.user_restarts == 0
        assert now.spec.max_restarts == 0  # untouched: a fault of the machine is not the code's


def test_an_ambiguous_cuda_error_in_the_termination_message_stays_the_users(
    k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path,
) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNS_ON) as w:
        exp = w.launch("illegal --gpus 1 --gpu-type a100 --max-restarts 0 -- python train.py")
        w.wait_state(exp.name, State.RUNNING)
        pod = _attempt_pod(w, exp.id, 1)
        _fail(w, pod, 1, LOG_BEFORE + ILLEGAL_ACCESS + "\n")

        done = w.wait_state(exp.name, State.FAILED, State.SUCCEEDED, timeout=60)
        assert done.state == State.FAILED
        [attempt] = done.attempts
        assert (attempt.failure_class, attempt.exit_code, attempt.node) == (FailureClass.USER, 1, pod.spec.node_name)
        assert "illegal memory access" in attempt.reason
        assert done.user_restarts == 0 and done.infra_restarts == 0
        assert len(w.jobs(exp.id)) == 1


def test_a_node_that_loses_a_gpu_while_the_attempt_runs_makes_its_exit_1_infrastructure(
    k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path,
) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNS_ON,
                        watch_nodes=True) as w:
        exp = w.launch("sickgpu --gpus 1 --gpu-type a100 --max-restarts 0 -- python train.py")
        w.wait_state(exp.name, State.RUNNING)
        first = _attempt_pod(w, exp.id, 1)
        bad_node = first.spec.node_name
        health = w.bot.backend.nodes  # type: ignore[attr-defined]
        gpus = w.core.read_node(bad_node).status.allocatable[GPU_RESOURCE]
        try:
            # What the kubelet does when the device plugin reports a GPU unhealthy.
            w.core.patch_node_status(bad_node, {"status": {"allocatable": {GPU_RESOURCE: str(int(gpus) - 1)}}})
            wait_for(lambda: health.lost_gpus(bad_node, first.metadata.creation_timestamp),
                     timeout=30, what=f"expbot to see {bad_node} short of a GPU")
            _fail(w, first, 1, LOG_BEFORE + ILLEGAL_ACCESS + "\n")  # ambiguous on its own

            wait_for(lambda: len(w.jobs(exp.id)) == 2, timeout=60, what="the second attempt's Job")
            assert _excluded(w.jobs(exp.id)[1]) == [[bad_node]]
            after = w.get(exp.name)
            failed = after.attempts[0]
            assert failed.failure_class == FailureClass.INFRA and failed.node == bad_node
            assert f"node {bad_node} lost GPUs" in failed.reason and f"{int(gpus) - 1} of {gpus}" in failed.reason
            assert after.infra_restarts == 1 and after.user_restarts == 0
        finally:
            w.core.patch_node_status(bad_node, {"status": {"allocatable": {GPU_RESOURCE: gpus}}})


def test_a_third_experiment_failing_on_the_same_node_reports_it_exactly_once(
    k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path,
) -> None:
    from core.node_health import AUDIT_NODE

    a100s = sorted(n for n, kind in GPU_NODES.items() if kind == "a100")
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNS_ON) as w:
        _crowd(w, a100s[1])  # every first attempt lands on the same node
        exps = [w.launch(f"sick-{n} --gpus 1 --gpu-type a100 --max-preemptions 0 -- python train.py")
                for n in range(3)]
        pods = []
        for exp in exps:
            w.wait_state(exp.name, State.RUNNING)
            pods.append(_attempt_pod(w, exp.id, 1))
        assert {p.spec.node_name for p in pods} == {a100s[0]}
        for exp, pod in zip(exps, pods):
            _fail(w, pod, 1, LOG_BEFORE + XID_79 + "\n")
            w.wait_state(exp.name, State.FAILED)  # --max-preemptions 0: no restart to wait for

        def reports() -> list[dict]:
            with w.bot.uow_factory() as uow:
                return [e["detail"] for e in uow.audit.entries(action=AUDIT_NODE)]

        [report] = wait_for(reports, timeout=30, what="the node-health report")
        assert report["node"] == a100s[0] and report["experiments"] == 3
        assert all(w.get(e.name).attempts[0].failure_class == FailureClass.HARDWARE for e in exps)
