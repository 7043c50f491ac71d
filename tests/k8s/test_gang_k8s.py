"""Acceptance of multi-node experiments (#14) on the control plane: 2 KWOK nodes x 8 GPUs of one type.

A gang is one Indexed Job and a headless Service per attempt; these tests look at what the cluster
really holds (pods, their nodes, annotations and env, the Service) and at what expbot decided.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from adapters.k8s import names
from core import commands
from core.errors import CapacityError
from core.model import FailureClass, State
from tests.k8s.cluster_helpers import evict_pod, lifecycle
from tests.k8s.harness import World, running_expbot
from tests.polling import wait_for

SHARED = 'shared_storage_class = "shared-rwx"'
RUNNING = {"ready": "200ms", "complete": "24h", "terminate": "200ms"}


def pod_env(pod: client.V1Pod) -> dict[str, str]:
    """The container's env as the kubelet would resolve it (fieldRefs to the pod's annotations)."""
    found = {}
    for var in pod.spec.containers[0].env:
        if var.value_from is not None:
            path = var.value_from.field_ref.field_path
            key = path.split("['", 1)[1].rstrip("']")
            found[var.name] = pod.metadata.annotations[key]
        else:
            found[var.name] = var.value or ""
    return found


def live_pods(w: World, experiment_id: str, attempt: int) -> list[client.V1Pod]:
    """The attempt's pods that are not on their way out, by rank."""
    pods = [p for p in w.pods(experiment_id) if p.metadata.labels[names.ATTEMPT] == str(attempt)
            and p.metadata.deletion_timestamp is None]
    return sorted(pods, key=lambda p: int(p.metadata.annotations[names.COMPLETION_INDEX]))


def scheduled(w: World, experiment_id: str, attempt: int, count: int) -> list[client.V1Pod]:
    """Wait until `count` pods of the attempt are placed on nodes; those pods."""
    wait_for(lambda: len([p for p in live_pods(w, experiment_id, attempt) if p.spec.node_name]) == count,
             timeout=30, what=f"{count} pods of attempt {attempt} on nodes")
    return live_pods(w, experiment_id, attempt)


def test_a_gang_runs_on_two_nodes_and_an_evicted_pod_restarts_it_whole_uncounted(
        k8s_cluster: Any, k8s_api: Any, k8s_namespace: str, tmp_path: Path) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNNING,
                        kubernetes=SHARED) as w:
        exp = w.launch("gang --nodes 2 --gpus 8 --gpu-type a100 --max-restarts 0 -- torchrun train.py")
        w.wait_state(exp.name, State.RUNNING)
        first = scheduled(w, exp.id, 1, 2)
        assert len({p.spec.node_name for p in first}) == 2, "two pods of 8 GPUs on two different nodes"
        envs = [pod_env(p) for p in first]
        assert [e["NODE_RANK"] for e in envs] == [e["PET_NODE_RANK"] for e in envs] == ["0", "1"]
        job_name = names.job_name(exp.id, 1)
        assert {e["MASTER_ADDR"] for e in envs} == {f"{job_name}-0.{job_name}"}
        assert all(e["NNODES"] == "2" and e["WORLD_SIZE"] == "16" and e["NPROC_PER_NODE"] == "8" for e in envs)
        # Rank 0 answers at MASTER_ADDR: its hostname and subdomain, and the headless Service of that name.
        assert (first[0].spec.hostname, first[0].spec.subdomain) == (f"{job_name}-0", job_name)
        service = w.core.read_namespaced_service(job_name, k8s_namespace)
        assert service.spec.cluster_ip == "None" and service.metadata.owner_references[0].name == job_name
        claim = w.core.read_namespaced_persistent_volume_claim(names.pvc_name(exp.id), k8s_namespace)
        assert claim.spec.access_modes == ["ReadWriteMany"] and claim.spec.storage_class_name == "shared-rwx"

        evict_pod(w.core, k8s_namespace, first[1].metadata.name)
        second = scheduled(w, exp.id, 2, 2)
        job = w.jobs(exp.id)[-1]
        assert job.spec.completions == job.spec.parallelism == 2 and job.spec.completion_mode == "Indexed"
        # Both pods of the next attempt came from one Job, created together.
        assert {p.metadata.owner_references[0].name for p in second} == {names.job_name(exp.id, 2)}
        wait_for(lambda: not live_pods(w, exp.id, 1), timeout=30, what="the rest of the first gang to be removed")
        now = w.wait_state(exp.name, State.RUNNING)
        assert now.attempts[0].failure_class == FailureClass.INFRA and "rank 1" in now.attempts[0].reason
        assert now.user_restarts == 0 and now.infra_restarts == 1  # --max-restarts 0, and it restarted


def test_exit_1_on_rank_1_is_a_user_error_naming_rank_1_and_its_node(
        k8s_cluster: Any, k8s_api: Any, k8s_namespace: str, tmp_path: Path) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNNING,
                        kubernetes=SHARED) as w:
        exp = w.launch("crashy --nodes 2 --gpus 8 --gpu-type a100 --max-restarts 0 -- torchrun train.py")
        w.wait_state(exp.name, State.RUNNING)
        rank1 = scheduled(w, exp.id, 1, 2)[1]
        labels, annotations = lifecycle(fail="100ms", fail_reason="Error", fail_exit_code=1,
                                        fail_message="ValueError: rank 1 diverged")
        w.core.patch_namespaced_pod(rank1.metadata.name, k8s_namespace,
                                    {"metadata": {"labels": labels, "annotations": annotations}})
        done = w.wait_state(exp.name, State.FAILED, State.SUCCEEDED, timeout=45)
        assert done.state == State.FAILED
        [attempt] = done.attempts
        assert attempt.failure_class == FailureClass.USER and attempt.exit_code == 1
        assert f"rank 1 on {rank1.spec.node_name}" in attempt.reason and "diverged" in attempt.reason
        wait_for(lambda: not w.jobs(exp.id), timeout=30, what="the gang's Job to be deleted")


def test_a_gang_that_half_fits_is_taken_down_after_gang_timeout_and_waits_queued(
        k8s_cluster: Any, k8s_api: Any, k8s_namespace: str, tmp_path: Path) -> None:
    kubernetes = f"{SHARED}\ngang_timeout = 2\ngang_retry = 4"
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNNING,
                        kubernetes=kubernetes, k8s_resync_seconds=0.5) as w:
        blocker = w.launch("blocker --gpus 8 --gpu-type a100 -- python hold.py")
        w.wait_state(blocker.name, State.RUNNING)
        exp = w.launch("half --nodes 2 --gpus 8 --gpu-type a100 -- torchrun train.py")
        scheduled(w, exp.id, 1, 1)  # one pod placed (holding 8 GPUs), the other cannot be

        def parked() -> bool:
            now = w.get(exp.name)
            return now.state == State.QUEUED and "taken down" in (now.state_reason or "") and not live_pods(w, exp.id, 1)
        wait_for(parked, timeout=30, what="the half-placed gang to be taken down and the experiment QUEUED")
        reason = w.get(exp.name).state_reason
        assert "Insufficient nvidia.com/gpu" in reason and "1 of 2" in reason
        assert not [p for p in w.pods(exp.id) if p.metadata.deletion_timestamp is None], "no pod holds a GPU"
        # Once the GPUs are free, the retry places the whole gang.
        w.bot.bus.handle(commands.StopExperiment(name=blocker.name, by="alice"))
        w.wait_state(exp.name, State.RUNNING, timeout=45)
        assert len(scheduled(w, exp.id, 1, 2)) == 2
        assert len(w.get(exp.name).attempts) == 1  # waiting for the gang spent no attempt


def test_a_gang_without_shared_storage_is_refused_at_launch(
        k8s_cluster: Any, k8s_api: Any, k8s_namespace: str, tmp_path: Path) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=RUNNING,
                        start=False) as w:
        with pytest.raises(CapacityError) as refused:
            w.launch("solo --nodes 2 --gpus 8 --gpu-type a100 -- torchrun train.py")
        line = str(refused.value)
        assert "\n" not in line and "shared_storage_class" in line and "ReadWriteMany" in line, line
        with w.bot.uow_factory() as uow:
            assert uow.experiments.get_by_name("solo") is None
