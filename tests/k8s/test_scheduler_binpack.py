"""The optional bin-packing kube-scheduler profile (tests/cluster/scheduler_config.py) on its own control plane.

With it, a GPU pod goes to the fullest node it fits on, and equally full nodes are taken in the given
order; without it (the shared test control plane) the scheduler keeps its defaults and no --config.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cluster.controlplane import ControlPlane, default_bin_dir
from tests.cluster.scheduler_config import binpack_profile, only_gpu_taints
from tests.k8s.cluster_helpers import fresh_namespace, gpu_pod, lifecycle, wait_for

pytestmark = pytest.mark.slow

# Not the names' order, so neither a sort by name nor the default's coin toss can pass for it.
ORDER = ["gpu-a100-1", "gpu-a100-0", "gpu-h100-1", "gpu-h100-0"]


@pytest.fixture(scope="module")
def binpack_cluster(k8s_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second control plane, its scheduler run with binpack_profile(ORDER) (k8s_cluster: binaries are built)."""
    cluster = ControlPlane(default_bin_dir(), tmp_path_factory.mktemp("k8s-binpack"), scheduler_profile=binpack_profile(ORDER))
    cluster.start()
    try:
        wait_for(lambda: schedulable(cluster), timeout=60, what="every GPU node without a not-ready taint")
        yield cluster
    finally:
        cluster.stop()


def schedulable(cluster: ControlPlane) -> bool:
    """Ready is not enough: the node lifecycle controller lifts its not-ready taint a moment later."""
    api = cluster.api_client()
    try:
        nodes = client.CoreV1Api(api).list_node().items
    finally:
        api.close()
    return len(nodes) == len(ORDER) and all(only_gpu_taints(n) for n in nodes)


def _place(core: client.CoreV1Api, ns: str, name: str, gpus: int, gpu_type: str) -> str:
    labels, annotations = lifecycle(ready="100ms", complete=None)
    core.create_namespaced_pod(ns, gpu_pod(name, gpus, gpu_type, labels=labels, annotations=annotations))
    return wait_for(lambda: core.read_namespaced_pod(name, ns).spec.node_name, timeout=60, what=f"{name} bound")


def test_gpu_pods_go_to_the_fullest_node_that_fits_and_ties_follow_the_order(binpack_cluster: ControlPlane) -> None:
    api = binpack_cluster.api_client()
    try:
        core = client.CoreV1Api(api)
        with fresh_namespace(api) as ns:
            placed = [
                _place(core, ns, "a-tie", 2, "a100"),      # both empty: the first in ORDER
                _place(core, ns, "h-tie", 1, "h100"),      # both empty: the first in ORDER
                _place(core, ns, "a-fullest", 3, "a100"),  # 6 free vs 8 free: the fuller one
                _place(core, ns, "a-fits", 4, "a100"),     # 3 free vs 8: only the other fits
                _place(core, ns, "a-best", 1, "a100"),     # 3 free vs 4 free: the fuller one again
                _place(core, ns, "h-fullest", 7, "h100"),  # 7 free vs 8 free
            ]
    finally:
        api.close()
    assert placed == ["gpu-a100-1", "gpu-h100-1", "gpu-a100-1", "gpu-a100-0", "gpu-a100-1", "gpu-h100-1"]


def test_the_profile_moves_the_client_settings_into_the_scheduler_config(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    profiled = ControlPlane(bin_dir, tmp_path / "p", kube_api_qps=200, scheduler_profile=binpack_profile(ORDER))
    plain = ControlPlane(bin_dir, tmp_path / "d", kube_api_qps=200)
    for cluster in (profiled, plain):
        cluster.workdir.mkdir()
        cluster.ports = dict.fromkeys(("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler"), 1)
        cluster._define_processes(cluster.workdir / "stages.yaml")
    args = profiled.processes["kube-scheduler"].args
    config = yaml.safe_load((profiled.workdir / "kube-scheduler.yaml").read_text())
    assert f"--config={profiled.workdir / 'kube-scheduler.yaml'}" in args
    assert not [a for a in args if a.startswith(("--kubeconfig=", "--leader-elect=", "--kube-api-"))]
    assert config["clientConnection"] == {"kubeconfig": str(profiled.kubeconfig), "qps": 200, "burst": 400}
    assert config["leaderElection"] == {"leaderElect": False}
    # The shared control plane's scheduler: its flags, no config file.
    plain_args = plain.processes["kube-scheduler"].args
    assert not [a for a in plain_args if a.startswith("--config")]
    assert "--leader-elect=false" in plain_args and "--kube-api-qps=200" in plain_args
