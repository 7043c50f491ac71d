"""Acceptance with a real Kueue on the control plane (#14): quota admission of a whole gang, a gang
waiting with Kueue's own reason, Kueue's preemption of an admitted Job as infrastructure, and
deploy/kubernetes/kueue's Role granting exactly the Workload reads expbot makes.

Each test has its own ClusterQueue (16 a100 GPUs: one 2 x 8 gang) and LocalQueue, so what an earlier
test left behind uses no quota of its.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from adapters.k8s import names
from core import commands
from core.model import FailureClass, State
from tests.cluster.kueue import GROUP, HIGH_PRIORITY, VERSION, Kueue, kueue_dir
from tests.cluster.nodes import GPU_RESOURCE, GPU_TOLERATIONS, GPU_TYPE_LABEL
from tests.cluster.processes import ControlPlaneError
from tests.k8s.cluster_helpers import lifecycle
from tests.k8s.harness import World, running_expbot
from tests.k8s.rbac_audit import granted, load, recording, token_kubeconfig
from tests.k8s.test_deploy_rbac import BASE, NS, admin, deployed, kubectl, rendered  # noqa: F401
from tests.polling import wait_for

pytestmark = pytest.mark.slow
RUNNING = {"ready": "200ms", "complete": "24h", "terminate": "200ms"}


@pytest.fixture(scope="module")
def kueue(k8s_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    api = k8s_cluster.api_client()
    try:
        controller = Kueue(kueue_dir(), Path(k8s_cluster.kubeconfig), tmp_path_factory.mktemp("kueue")).start(api)
    except (ControlPlaneError, OSError) as exc:
        api.close()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Kueue unavailable (CI=true): {exc}", pytrace=False)
        pytest.skip(f"Kueue unavailable: {exc}")
    try:
        yield controller
    finally:
        controller.stop()
        api.close()


@pytest.fixture
def queue(kueue: Kueue, k8s_api: Any, k8s_namespace: str) -> str:
    """This test's LocalQueue (its own ClusterQueue of 16 a100 GPUs); the name for [kubernetes] queue_name."""
    cluster_queue = f"cq-{k8s_namespace}"
    kueue.gpu_queues(k8s_api, {"a100": 16}, cluster_queue=cluster_queue)
    return kueue.local_queue(k8s_api, k8s_namespace, cluster_queue=cluster_queue)


def settings(queue_name: str) -> str:
    return f'shared_storage_class = "shared-rwx"\nqueue_name = "{queue_name}"'


def workload_of(w: World, job_name: str) -> dict[str, Any] | None:
    found = client.CustomObjectsApi(w.api).list_namespaced_custom_object(GROUP, VERSION, w.namespace, "workloads")
    return next((wl for wl in found["items"]
                 if any(o.get("name") == job_name for o in wl["metadata"].get("ownerReferences") or ())), None)


def attempt_pods(w: World, experiment_id: str, attempt: int) -> list[client.V1Pod]:
    return [p for p in w.pods(experiment_id) if p.metadata.labels[names.ATTEMPT] == str(attempt)
            and p.metadata.deletion_timestamp is None]


def test_kueue_admits_a_gang_within_quota_whole(k8s_api, k8s_namespace, queue, k8s_cluster, tmp_path: Path) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNNING,
                        kubernetes=settings(queue)) as w:
        exp = w.launch("admitted --nodes 2 --gpus 8 --gpu-type a100 -- torchrun train.py")
        w.wait_state(exp.name, State.RUNNING, timeout=45)
        [job] = w.jobs(exp.id)
        assert job.metadata.labels[names.KUEUE_QUEUE] == queue and job.spec.suspend is False
        workload = workload_of(w, job.metadata.name)
        assert workload is not None and workload["spec"]["podSets"][0]["count"] == 2
        admitted = {c["type"]: c["status"] for c in workload["status"]["conditions"]}
        assert admitted.get("Admitted") == "True"
        pods = attempt_pods(w, exp.id, 1)
        assert len(pods) == 2 and all(p.spec.node_name for p in pods)


def test_a_gang_over_the_remaining_quota_waits_with_kueues_reason(k8s_api, k8s_namespace, queue, k8s_cluster,
                                                                   tmp_path: Path) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNNING,
                        kubernetes=settings(queue)) as w:
        first = w.launch("first --nodes 2 --gpus 8 --gpu-type a100 -- torchrun train.py")
        w.wait_state(first.name, State.RUNNING, timeout=45)
        second = w.launch("second --nodes 2 --gpus 8 --gpu-type a100 -- torchrun train.py")
        wait_for(lambda: "insufficient unused quota" in (w.get(second.name).state_reason or ""), timeout=30,
                 what=f"second to wait with Kueue's reason (now {w.get(second.name).state_reason!r})")
        waiting = w.get(second.name)
        assert waiting.state == State.QUEUED and "waiting for the cluster queue" in waiting.state_reason
        assert not attempt_pods(w, second.id, 1), "a gang Kueue has not admitted has no pod"
        [job] = w.jobs(second.id)
        assert job.spec.suspend is True


def urgent_job(namespace: str, queue: str) -> dict[str, Any]:
    """A 2 x 8 GPU Job of higher priority in the same queue: Kueue preempts expbot's gang for it."""
    labels, annotations = lifecycle(**RUNNING)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "urgent", "namespace": namespace, "labels": {names.KUEUE_QUEUE: queue}},
        "spec": {
            "suspend": True, "completionMode": "Indexed", "completions": 2, "parallelism": 2, "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Never", "priorityClassName": HIGH_PRIORITY,
                    "nodeSelector": {GPU_TYPE_LABEL: "a100"}, "tolerations": GPU_TOLERATIONS,
                    "containers": [{"name": "urgent", "image": "busybox:1.36",
                                    "resources": {"requests": {GPU_RESOURCE: "8"}, "limits": {GPU_RESOURCE: "8"}}}],
                },
            },
        },
    }


def test_kueue_preempting_an_admitted_gang_is_an_infrastructure_restart(k8s_api, k8s_namespace, queue, k8s_cluster,
                                                                         tmp_path: Path) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNNING,
                        kubernetes=settings(queue)) as w:
        exp = w.launch("preemptible --nodes 2 --gpus 8 --gpu-type a100 --max-restarts 0 -- torchrun train.py")
        w.wait_state(exp.name, State.RUNNING, timeout=45)
        client.BatchV1Api(k8s_api).create_namespaced_job(k8s_namespace, urgent_job(k8s_namespace, queue))
        wait_for(lambda: len(w.get(exp.name).attempts) == 2, timeout=45, what="the preempted gang's next attempt")
        now = w.get(exp.name)
        first = now.attempts[0]
        assert first.failure_class == FailureClass.INFRA and "Preempted" in first.reason, first.reason
        assert now.user_restarts == 0 and now.state != State.FAILED  # --max-restarts 0 was not spent
        # The next attempt waits for Kueue (the urgent Job holds the quota), with Kueue's reason.
        wait_for(lambda: "waiting for the cluster queue" in (w.get(exp.name).state_reason or ""), timeout=30,
                 what="the next attempt to wait for the queue")
        # The quota went to the urgent Job: Kueue admitted it whole.
        core = client.CoreV1Api(k8s_api)
        wait_for(lambda: len(core.list_namespaced_pod(k8s_namespace, label_selector="batch.kubernetes.io/job-name=urgent",
                                                      field_selector="status.phase=Running").items) == 2,
                 timeout=30, what="the urgent Job's two pods running")
        assert not attempt_pods(w, exp.id, 2), "the next attempt waits for Kueue with no pod"


def test_the_kueue_role_grants_exactly_the_workload_reads_expbot_makes(
        k8s_cluster, kueue, admin, deployed, kubectl, tmp_path: Path) -> None:  # noqa: F811
    """As the deployed ServiceAccount with the base Role and deploy/kubernetes/kueue, an experiment in
    Kueue's queue: every Kueue request is granted by the kueue Role, and it grants nothing unused."""
    env = os.environ | {"KUBECONFIG": str(k8s_cluster.kubeconfig)}
    subprocess.run([kubectl, "apply", "-k", str(BASE / "kueue")], env=env, check=True, capture_output=True, timeout=60)
    kueue.gpu_queues(admin, {"a100": 16}, cluster_queue="cq-least-privilege")
    name = kueue.local_queue(admin, NS, name="least-privilege", cluster_queue="cq-least-privilege")
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = client.CoreV1Api(admin).create_namespaced_service_account_token("expbot", NS, request).status.token
    kubeconfig = token_kubeconfig(Path(k8s_cluster.kubeconfig), token, tmp_path / "sa.kubeconfig")
    with recording(token) as seen, running_expbot(tmp_path, kubeconfig, NS, admin, pod_behaviour=RUNNING,
                                                  kubernetes=settings(name)) as w:
        exp = w.launch("queued-least-priv --gpus 8 --gpu-type a100 -- python train.py")
        w.wait_state(exp.name, State.RUNNING, timeout=45)
        w.bot.bus.handle(commands.StopExperiment(name=exp.name, by="alice"))
        w.wait_state(exp.name, State.STOPPED, timeout=45)
    used = {a for a in seen.accesses if a.group == GROUP}
    assert used == granted(load(BASE / "kueue" / "role.yaml"), "Role")
    base_and_kueue = granted(load(BASE / "rbac.yaml"), "Role") | used
    assert {a for a in seen.accesses if a.namespaced} <= base_and_kueue
