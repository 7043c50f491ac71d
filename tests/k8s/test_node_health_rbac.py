"""The optional node-health ClusterRole: without it expbot cannot touch Nodes; with it, it can cordon one."""
from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from kubernetes import client

from adapters.clock import SystemClock
from adapters.k8s.backend import K8sBackend
from adapters.k8s.config import K8sConfig
from adapters.k8s.errors import KubeError
from tests.k8s.test_deploy_rbac import BASE, _impersonating, admin, as_expbot, deployed, kubectl, rendered  # noqa: F401

pytestmark = pytest.mark.slow
NODE = "expbot-node-health-test"
ROLE = BASE / "node-health"


@pytest.fixture
def spare_node(admin: Any):
    """A Node of its own (no kubelet, no pods), so cordoning it disturbs no other test."""
    core = client.CoreV1Api(admin)
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=NODE)))
    yield NODE
    core.delete_node(NODE)


def test_cordoning_needs_the_node_health_role_and_then_works(k8s_cluster, kubectl, as_expbot, admin, spare_node):
    backend = K8sBackend(as_expbot, K8sConfig(namespace="expbot", cordon_bad_nodes=True), SystemClock())
    with pytest.raises(KubeError):
        backend.cordon_node(spare_node)  # the base grants nothing cluster-wide
    env = os.environ | {"KUBECONFIG": str(k8s_cluster.kubeconfig)}  # HOME kept: kubectl caches under it
    subprocess.run([kubectl, "apply", "-k", str(ROLE)], env=env, check=True, capture_output=True, timeout=60)
    try:
        fresh = K8sBackend(_impersonating(k8s_cluster), backend.config, SystemClock())
        fresh.cordon_node(spare_node)
        assert client.CoreV1Api(admin).read_node(spare_node).spec.unschedulable is True
        # Read-only otherwise: the role lets it patch nodes, not delete them.
        with pytest.raises(client.ApiException) as refused:
            client.CoreV1Api(fresh.core.api_client).delete_node(spare_node)
        assert refused.value.status == 403
    finally:
        subprocess.run([kubectl, "delete", "-k", str(ROLE)], env=env, capture_output=True, timeout=60)
