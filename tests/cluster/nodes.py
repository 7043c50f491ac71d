"""The fake GPU nodes that KWOK manages: labels, taints, tolerations, Node manifests and readiness.

Fake GPU nodes (``ControlPlane.create_gpu_nodes``): gpu-a100-{0,1} and gpu-h100-{0,1}, 8 nvidia.com/gpu
each, label expbot.dev/gpu-type, taints kwok.x-k8s.io/node=fake:NoSchedule and
nvidia.com/gpu=present:NoSchedule (pods need ``GPU_TOLERATIONS``).
"""
from __future__ import annotations

import copy
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TYPE_LABEL = "expbot.dev/gpu-type"
GPUS_PER_NODE = 8
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_VALUE = "fake"
GPU_NODES: dict[str, str] = {
    "gpu-a100-0": "a100",
    "gpu-a100-1": "a100",
    "gpu-h100-0": "h100",
    "gpu-h100-1": "h100",
}
GPU_TAINTS = [
    {"key": KWOK_NODE_ANNOTATION, "value": KWOK_NODE_VALUE, "effect": "NoSchedule"},
    {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"},
]
GPU_TOLERATIONS = [
    {"key": KWOK_NODE_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"},
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
]


def gpu_node_manifest(name: str, gpu_type: str, gpus: int = GPUS_PER_NODE) -> dict[str, Any]:
    """A fake GPU Node managed by kwok (status is kept by kwok's node-initialize stage)."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_VALUE},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                GPU_TYPE_LABEL: gpu_type,
            },
        },
        "spec": {"taints": copy.deepcopy(GPU_TAINTS)},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def node_is_ready(node: Any) -> bool:
    """Whether a V1Node has condition Ready=True."""
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []) if node.status)
