"""The Kubernetes backend refuses a request bigger than its nodes, suggesting --nodes (no cluster needed)."""
from __future__ import annotations

from kubernetes import client

from adapters.k8s.backend import K8sBackend
from adapters.k8s.config import K8sConfig
from core.spec import ExperimentSpec
from tests.fakes.clock import FakeClock


def test_sixteen_gpus_on_eight_gpu_nodes_suggest_two_nodes():
    backend = K8sBackend(client.ApiClient(), K8sConfig(namespace="ml", max_gpus_per_node=8), FakeClock())
    spec = ExperimentSpec(name="llm", command=("torchrun", "t.py"), image="img", gpus=16, gpu_type="h100")
    assert backend.check_fits(spec) == (
        "16 GPUs asked for, but no node has more than 8; ask for --nodes 2 --gpus 8 instead (16 GPUs in all)")
    assert backend.check_fits(spec.model_copy(update={"gpus": 8})) is None
