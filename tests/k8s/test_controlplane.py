"""The KWOK test control plane behaves like a GPU cluster: scheduling, lifecycles, failures, eviction, deletion, RBAC."""
from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.k8s.cluster_helpers import (
    GPU_NODES,
    PodWatcher,
    condition,
    delete_node,
    evict_pod,
    gpu_job,
    gpu_pod,
    job_pods,
    lifecycle,
    recreate_node,
    wait_for,
    wait_gone,
)

H100_NODES = {n for n, t in GPU_NODES.items() if t == "h100"}


def _job_condition(batch: client.BatchV1Api, ns: str, name: str, type_: str) -> Any:
    job = batch.read_namespaced_job(name, ns)
    cond = condition(job, type_)
    return cond if cond is not None and cond.status == "True" else None


def _terminated(pod: client.V1Pod) -> Any:
    statuses = pod.status.container_statuses or []
    return statuses[0].state.terminated if statuses and statuses[0].state else None


def test_gpu_nodes_are_ready_with_gpus(k8s_api: Any) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(k8s_api).list_node().items}
    assert set(GPU_NODES) <= set(nodes)
    for name, gpu_type in GPU_NODES.items():
        node = nodes[name]
        assert condition(node, "Ready").status == "True"
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.metadata.labels["expbot.dev/gpu-type"] == gpu_type
        assert {(t.key, t.effect) for t in node.spec.taints} >= {("kwok.x-k8s.io/node", "NoSchedule"),
                                                                 ("nvidia.com/gpu", "NoSchedule")}


def test_h100_job_is_scheduled_runs_and_succeeds(k8s_api: Any, k8s_namespace: str) -> None:
    core, batch, ns = client.CoreV1Api(k8s_api), client.BatchV1Api(k8s_api), k8s_namespace
    labels, annotations = lifecycle(ready="500ms", complete="1500ms")
    with PodWatcher(core, ns) as pods:
        batch.create_namespaced_job(ns, gpu_job("train", 8, "h100", labels=labels, annotations=annotations))
        running = pods.wait(lambda e: e.pod.status.phase == "Running", what="pod Running")
        assert running.pod.spec.node_name in H100_NODES
        assert condition(running.pod, "Ready").status == "True"
        done = pods.wait(lambda e: e.pod.status.phase == "Succeeded", what="pod Succeeded")
    term = _terminated(done.pod)
    assert (term.reason, term.exit_code) == ("Completed", 0)
    # The pod-complete delay annotation (1.5s) is honoured (the timestamps have whole seconds).
    assert (term.finished_at - done.pod.status.start_time).total_seconds() >= 1
    wait_for(lambda: _job_condition(batch, ns, "train", "Complete"), timeout=15, what="Job Complete")
    assert batch.read_namespaced_job("train", ns).status.succeeded == 1


def test_pod_asking_for_more_gpus_than_a_node_has_is_unschedulable(k8s_api: Any, k8s_namespace: str) -> None:
    core, ns = client.CoreV1Api(k8s_api), k8s_namespace
    core.create_namespaced_pod(ns, gpu_pod("too-big", 9))

    def unschedulable() -> Any:
        cond = condition(core.read_namespaced_pod("too-big", ns), "PodScheduled")
        return cond if cond is not None and cond.status == "False" else None

    cond = wait_for(unschedulable, timeout=15, what="PodScheduled=False")
    assert cond.reason == "Unschedulable"
    assert "nvidia.com/gpu" in cond.message
    pod = core.read_namespaced_pod("too-big", ns)
    assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_chaos_label_makes_the_container_oomkilled(k8s_api: Any, k8s_namespace: str) -> None:
    core, batch, ns = client.CoreV1Api(k8s_api), client.BatchV1Api(k8s_api), k8s_namespace
    labels, annotations = lifecycle(ready="300ms", fail="700ms", fail_reason="OOMKilled", fail_exit_code=137)
    with PodWatcher(core, ns) as pods:
        batch.create_namespaced_job(ns, gpu_job("oom", 8, "a100", labels=labels, annotations=annotations))
        failed = pods.wait(lambda e: e.pod.status.phase == "Failed", what="pod Failed")
    term = _terminated(failed.pod)
    assert (term.reason, term.exit_code) == ("OOMKilled", 137)
    job_failed = wait_for(lambda: _job_condition(batch, ns, "oom", "Failed"), timeout=15, what="Job Failed")
    assert job_failed.reason == "BackoffLimitExceeded"
    # The Job controller drops its tracking finalizer from the finished pod.
    wait_for(lambda: not job_pods(core, ns, "oom")[0].metadata.finalizers, timeout=10, what="finalizer removed")


def test_eviction_sets_disruption_target_and_the_pod_goes_away(k8s_api: Any, k8s_namespace: str) -> None:
    core, batch, ns = client.CoreV1Api(k8s_api), client.BatchV1Api(k8s_api), k8s_namespace
    labels, annotations = lifecycle(ready="300ms", complete="24h")
    with PodWatcher(core, ns) as pods:
        batch.create_namespaced_job(ns, gpu_job("evictee", 8, "h100", labels=labels, annotations=annotations,
                                                backoff_limit=1))
        first = pods.wait(lambda e: e.pod.status.phase == "Running", what="pod Running").pod
        evict_pod(core, ns, first.metadata.name)

        def is_first(e: Any) -> bool:
            return e.pod.metadata.name == first.metadata.name

        # The Eviction API first adds the condition, then deletes the pod (two writes).
        disrupted = pods.wait(lambda e: is_first(e) and condition(e.pod, "DisruptionTarget") is not None,
                              what="DisruptionTarget condition")
        deleting = pods.wait(lambda e: is_first(e) and e.pod.metadata.deletion_timestamp is not None,
                             what="evicted pod Terminating")
        # kwok's pod-terminate stage: the "kubelet" fails the pod, then the Job controller drops its finalizer.
        failed = pods.wait(lambda e: is_first(e) and e.pod.status.phase == "Failed", what="evicted pod Failed")
        pods.wait(lambda e: is_first(e) and e.type == "DELETED", what="evicted pod deleted")
    cond = condition(disrupted.pod, "DisruptionTarget")
    assert (cond.status, cond.reason) == ("True", "EvictionByEvictionAPI")
    assert condition(deleting.pod, "DisruptionTarget") is not None
    assert (_terminated(failed.pod).reason, _terminated(failed.pod).exit_code) == ("Error", 143)
    # An eviction counts as a Job failure (no podFailurePolicy); the replacement pod follows after the
    # Job controller's pod-failure backoff (~10s), which this test does not wait for.
    wait_for(lambda: batch.read_namespaced_job("evictee", ns).status.failed == 1, timeout=10, what="Job failed=1")


@pytest.mark.parametrize("propagation", ["Foreground", "Background"])
def test_deleting_a_running_job_leaves_no_pods(k8s_api: Any, k8s_namespace: str, propagation: str) -> None:
    core, batch, ns = client.CoreV1Api(k8s_api), client.BatchV1Api(k8s_api), k8s_namespace
    labels, annotations = lifecycle(ready="300ms", complete="24h")
    with PodWatcher(core, ns) as pods:
        batch.create_namespaced_job(ns, gpu_job("doomed", 8, None, labels=labels, annotations=annotations))
        pods.wait(lambda e: e.pod.status.phase == "Running", what="pod Running")
        t0 = time.monotonic()
        batch.delete_namespaced_job("doomed", ns, propagation_policy=propagation)
        pods.wait(lambda e: e.type == "DELETED", timeout=20, what="pod deleted")
        elapsed = time.monotonic() - t0
    wait_gone(lambda: batch.read_namespaced_job("doomed", ns), timeout=10, what="Job gone")
    assert job_pods(core, ns, "doomed") == []
    assert elapsed < 10


def test_rbac_is_enforced_for_service_accounts(k8s_cluster: Any, k8s_api: Any, k8s_namespace: str) -> None:
    core, rbac, ns = client.CoreV1Api(k8s_api), client.RbacAuthorizationV1Api(k8s_api), k8s_namespace
    core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(ns, {"metadata": {"name": "pod-reader"},
                                     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
    })
    api = k8s_cluster.api_client()
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{ns}:reader")
    try:
        client.CoreV1Api(api).list_namespaced_pod(ns)
        with pytest.raises(ApiException) as denied:
            client.BatchV1Api(api).create_namespaced_job(ns, gpu_job("nope", 1))
        assert denied.value.status == 403
        with pytest.raises(ApiException) as other_ns:
            client.CoreV1Api(api).list_namespaced_pod("default")
        assert other_ns.value.status == 403
    finally:
        api.close()


def test_restart_apiserver_and_the_cluster_keeps_working(k8s_cluster: Any, k8s_namespace: str) -> None:
    if not hasattr(k8s_cluster, "processes"):
        pytest.skip("needs a ControlPlane started by the fixture")
    t0 = time.monotonic()
    k8s_cluster.restart_apiserver()
    restart_s = time.monotonic() - t0
    api = k8s_cluster.api_client()
    try:
        batch, ns = client.BatchV1Api(api), k8s_namespace
        # Controllers, scheduler and kwok reconnected: a Job goes all the way through.
        labels, annotations = lifecycle(ready="200ms", complete="200ms")
        batch.create_namespaced_job(ns, gpu_job("after-restart", 1, labels=labels, annotations=annotations))
        # Generous: after several restarts in a row, client-go reflectors back off (up to 30s) before re-listing.
        wait_for(lambda: _job_condition(batch, ns, "after-restart", "Complete"), timeout=60,
                 what="Job Complete after the apiserver restart")
        print(f"apiserver restart {restart_s:.1f}s, Job complete {time.monotonic() - t0 - restart_s:.1f}s later")
    finally:
        api.close()
    assert restart_s < 30
    assert all(k8s_cluster.alive().values()), k8s_cluster.log_tail()


@pytest.mark.slow
def test_deleted_node_pods_are_garbage_collected(k8s_api: Any, k8s_namespace: str) -> None:
    """Deleting a node: its pods keep their last status until podgc (40s quarantine, 20s period) fails and deletes them."""
    core, ns = client.CoreV1Api(k8s_api), k8s_namespace
    labels, annotations = lifecycle(ready="300ms", complete="24h")
    node = "gpu-a100-1"
    pod = core.create_namespaced_pod(ns, {
        **gpu_pod("stranded", 8, labels=labels, annotations=annotations),
        "spec": {**gpu_pod("x", 8)["spec"], "nodeName": node},
    })
    with PodWatcher(core, ns) as pods:
        pods.wait(lambda e: e.pod.status.phase == "Running", what="pod Running")
        try:
            t0 = time.monotonic()
            delete_node(core, node)
            gone = pods.wait(lambda e: e.type == "DELETED", timeout=90, what="podgc deletes the pod")
            gc_s = time.monotonic() - t0
        finally:
            recreate_node(core, node)
    assert pod.metadata.name == gone.pod.metadata.name
    cond = condition(gone.pod, "DisruptionTarget")
    assert cond is not None and cond.reason == "DeletionByPodGC"
    assert gone.pod.status.phase == "Failed"
    # Usually 40-60s; shorter when the same node name was deleted (by another test) within the last minute,
    # because podgc's quarantine queue is keyed by node name.
    assert gc_s < 90
