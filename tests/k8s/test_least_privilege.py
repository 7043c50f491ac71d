"""Least privilege, derived: the Role grants exactly the verbs expbot uses, no more and no fewer.

A whole `serve` (leader election, the watches, the supervisor) runs in this process with a
kubeconfig that holds the ServiceAccount's own token, so every request it makes is authorized as
the ServiceAccount; `tests/k8s/rbac_audit.py` records each one as RBAC sees it. The experiments go
through what the backend does (submit, status through the watch, a multi-node gang with its
headless Service taken down and resumed, logs, stop, release, node evidence and cordoning), and the
recorded permissions must equal deploy/kubernetes/rbac.yaml's Role (namespaced) and
deploy/kubernetes/node-health's ClusterRole (cluster-wide). With a real Kueue ([kubernetes]
queue_name), tests/k8s/test_kueue_k8s.py does the same for deploy/kubernetes/kueue's Role with the
same recorder. A new API call in adapters/k8s fails here until a Role grants it; a grant nothing
uses fails here until it is removed.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from core import commands
from core.model import State
from tests.k8s.rbac_audit import Access, access_of, granted, load, recording, token_kubeconfig
from tests.k8s.test_deploy_rbac import BASE, NS, admin, deployed, kubectl, rendered  # noqa: F401
from tests.polling import wait_for

pytestmark = pytest.mark.slow
NODE_HEALTH = BASE / "node-health"
SPARE_NODE = "expbot-least-privilege-test"


def _difference(used: set[Access], allowed: set[Access], where: str) -> list[str]:
    problems = [f"used but not granted by {where}: {a}" for a in sorted(used - allowed)]
    return problems + [f"granted by {where} but never used: {a}" for a in sorted(allowed - used)]


# --- the URL -> permission mapping the derivation rests on -----------------------------------------
@pytest.mark.parametrize(("method", "url", "expected"), [
    ("GET", "https://h/apis/batch/v1/namespaces/x/jobs?labelSelector=a", Access(True, "batch", "jobs", "", "list")),
    ("GET", "https://h/apis/batch/v1/namespaces/x/jobs?watch=True&resourceVersion=5",
     Access(True, "batch", "jobs", "", "watch")),
    ("GET", "https://h/api/v1/namespaces/x/pods/p-1/log?container=c", Access(True, "", "pods", "log", "get")),
    ("GET", "https://h/api/v1/namespaces/x/pods/p-1", Access(True, "", "pods", "", "get")),
    ("POST", "https://h/api/v1/namespaces/x/persistentvolumeclaims", Access(True, "", "persistentvolumeclaims", "", "create")),
    ("DELETE", "https://h/apis/batch/v1/namespaces/x/jobs/j", Access(True, "batch", "jobs", "", "delete")),
    ("DELETE", "https://h/apis/batch/v1/namespaces/x/jobs", Access(True, "batch", "jobs", "", "deletecollection")),
    ("PUT", "https://h/apis/coordination.k8s.io/v1/namespaces/x/leases/l", Access(True, "coordination.k8s.io", "leases", "", "update")),
    ("PATCH", "https://h/api/v1/nodes/n1", Access(False, "", "nodes", "", "patch")),
    ("GET", "https://h/api/v1/nodes?watch=true", Access(False, "", "nodes", "", "watch")),
    ("GET", "https://h/api/v1/namespaces/x", Access(False, "", "namespaces", "", "get")),
])
def test_a_request_maps_to_the_permission_rbac_checks(method, url, expected):
    assert access_of(method, url) == expected


def test_a_role_expands_to_one_permission_per_verb():
    role = {"kind": "Role", "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}
    assert granted([role], "Role") == {Access(True, "", "pods", "", "get"), Access(True, "", "pods", "", "list"),
                                       Access(True, "", "pods", "log", "get"), Access(True, "", "pods", "log", "list")}
    assert granted([role], "ClusterRole") == set()


# --- the derivation on the control plane ---------------------------------------------------------
@pytest.fixture(scope="module")
def node_health(k8s_cluster: Any, kubectl: str, deployed: Any) -> Iterator[None]:  # noqa: F811
    env = os.environ | {"KUBECONFIG": str(k8s_cluster.kubeconfig)}
    subprocess.run([kubectl, "apply", "-k", str(NODE_HEALTH)], env=env, check=True, capture_output=True, timeout=60)
    yield
    subprocess.run([kubectl, "delete", "-k", str(NODE_HEALTH)], env=env, capture_output=True, timeout=60)


@pytest.fixture
def spare_node(admin: Any) -> Iterator[str]:  # noqa: F811
    core = client.CoreV1Api(admin)
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=SPARE_NODE)))
    yield SPARE_NODE
    core.delete_node(SPARE_NODE)


def _service_account_token(admin: Any) -> str:  # noqa: F811
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    return client.CoreV1Api(admin).create_namespaced_service_account_token("expbot", NS, request).status.token


def _exercise(world: Any, spare_node: str) -> None:
    """Everything the backend does: a single-node experiment and a multi-node gang that cannot be placed
    whole at first (taken down, then resumed), logs, stops, released claims, node evidence, a cordon."""
    bot = world.bot
    # One of the two a100 nodes is taken, so the gang's second pod cannot be placed until it is stopped.
    single = world.launch("least-priv --gpus 8 --gpu-type a100 --max-restarts 0 -- python train.py")
    world.wait_state(single.name, State.RUNNING, timeout=45)
    bot.backend.logs(single.id, 1, tail_lines=10)  # from the watch cache's pod name
    gang = world.launch("least-priv-gang --nodes 2 --gpus 8 --gpu-type a100 -- torchrun train.py")
    wait_for(lambda: "taken down" in (world.get(gang.name).state_reason or ""), timeout=45,
             what="the half-placed gang to be taken down after gang_timeout")
    for exp in (single, gang):
        if exp is gang:
            world.wait_state(gang.name, State.RUNNING, timeout=45)  # resumed once the GPUs were freed
        bot.bus.handle(commands.StopExperiment(name=exp.name, by="alice"))
        world.wait_state(exp.name, State.STOPPED, timeout=45)
        wait_for(lambda: not world.pvc_exists(exp.id), timeout=30, what=f"{exp.name}'s checkpoint claim to be released")
    bot.backend.logs(single.id, 1)  # the pod is gone from the cache: looked up by its labels
    bot.backend.cordon_node(spare_node)  # what [kubernetes] cordon_bad_nodes does to a node reported sick


@contextlib.contextmanager
def _serve_as_service_account(k8s_cluster: Any, admin: Any, tmp_path: Path, kubernetes: str,  # noqa: F811
                              **settings: Any) -> Iterator[tuple[Any, Any]]:
    """A whole serve (leader election on) authenticated by the ServiceAccount's token; (world, recording)."""
    from bot.serve import run_forever
    from tests.k8s.harness import running_expbot

    token = _service_account_token(admin)
    kubeconfig = token_kubeconfig(Path(k8s_cluster.kubeconfig), token, tmp_path / "sa.kubeconfig")
    # Lease timings short enough that renewals happen while the experiments run.
    settings |= {"leader_election": True, "lease_retry_seconds": 0.5, "lease_renew_deadline_seconds": 2.0,
                 "lease_duration_seconds": 3.0, "http_port": 0, "pod_name": "least-priv-0", "k8s_resync_seconds": 0.5}
    behaviour = {"ready": "200ms", "complete": "24h", "terminate": "200ms"}
    with recording(token) as seen, running_expbot(tmp_path, kubeconfig, NS, admin, pod_behaviour=behaviour, start=False,
                                                  kubernetes=kubernetes, **settings) as world:
        serving = threading.Thread(target=run_forever, args=(world.bot, world.stop), name="serve-under-test", daemon=True)
        serving.start()
        try:
            wait_for(lambda: world.bot.elector.is_leader, timeout=20, what="the serve under test to hold the Lease")
            yield world, seen
        finally:
            world.stop.set()
            serving.join(timeout=20)
        assert not serving.is_alive(), "serve did not stop"
    assert Access(True, "coordination.k8s.io", "leases", "", "update") in seen.accesses, "no renewal was recorded"


def test_the_role_grants_exactly_what_serve_uses(k8s_cluster, admin, deployed, node_health, spare_node, tmp_path):  # noqa: F811
    gangs = 'shared_storage_class = "shared-rwx"\ngang_timeout = 2\ngang_retry = 4'
    with _serve_as_service_account(k8s_cluster, admin, tmp_path, gangs, watch_nodes=True) as (world, seen):
        _exercise(world, spare_node)
    used = seen.accesses
    role = granted(load(BASE / "rbac.yaml"), "Role")
    cluster_role = granted(load(NODE_HEALTH / "clusterrole.yaml"), "ClusterRole")
    problems = _difference({a for a in used if a.namespaced}, role, "deploy/kubernetes/rbac.yaml")
    problems += _difference({a for a in used if not a.namespaced}, cluster_role, "deploy/kubernetes/node-health")
    assert not problems, "\n".join(problems)
