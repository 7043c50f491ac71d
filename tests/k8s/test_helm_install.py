"""deploy/helm/expbot on the control plane: the rendered chart applied, checked as the API server
stores it, and the backend run as the chart's ServiceAccount by impersonation (as
tests/k8s/test_deploy_rbac.py does for the kustomize base); and helm's own install, upgrade and uninstall.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.k8s.helm_chart import helm_binary, template
from tests.k8s.rbac_audit import granted, load
from tests.k8s.test_deploy_rbac import BASE, _allowed, admin, kubectl  # noqa: F401
from tests.polling import wait_for

NS = "expbot-helm"
SA_USER = f"system:serviceaccount:{NS}:expbot"


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


@pytest.fixture(scope="module")
def installed(k8s_cluster: Any, kubectl: str, helm: str, admin: Any) -> Iterator[list[dict[str, Any]]]:  # noqa: F811
    """The chart rendered for namespace expbot-helm (node health on) and applied; deleted afterwards."""
    core = client.CoreV1Api(admin)
    docs = template(helm, "nodeHealth.enabled=true", namespace=NS)

    def absent() -> bool:  # a previous run's namespace may still be terminating
        try:
            core.read_namespace(NS)
            return False
        except ApiException as e:
            if e.status == 404:
                return True
            raise

    wait_for(absent, timeout=90, what=f"namespace {NS} from an earlier run to be gone", interval=0.5)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    env = os.environ | {"KUBECONFIG": str(k8s_cluster.kubeconfig)}
    try:
        # kubectl validates strictly on the server: an unknown or misplaced field is an error.
        out = subprocess.run([kubectl, "apply", "-f", "-"], input=yaml.safe_dump_all(docs), env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        api = _impersonating(k8s_cluster)
        wait_for(lambda: _allowed(api, "create", "batch", "jobs", namespace=NS), timeout=10,
                 what="the chart's RoleBinding to take effect")
        api.close()
        yield docs
    finally:
        cluster_scoped = [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        subprocess.run([kubectl, "delete", "--ignore-not-found", "-f", "-"], input=yaml.safe_dump_all(cluster_scoped),
                       env=env, capture_output=True, text=True, timeout=60)
        core.delete_namespace(NS, propagation_policy="Background")


def _impersonating(k8s_cluster: Any) -> Any:
    api = k8s_cluster.api_client()
    api.default_headers["Impersonate-User"] = SA_USER
    return api


def test_the_applied_chart(installed, admin):
    deployment = client.AppsV1Api(admin).read_namespaced_deployment("expbot", NS)
    assert deployment.spec.template.spec.service_account_name == "expbot"
    assert deployment.spec.template.spec.containers[0].image == "expbot:0.1.0"
    role = client.RbacAuthorizationV1Api(admin).read_namespaced_role("expbot", NS)
    assert granted([admin.sanitize_for_serialization(role)], "Role") == granted(load(BASE / "rbac.yaml"), "Role")


def test_the_chart_pod_passes_pod_security_restricted(installed, admin, k8s_namespace):
    core = client.CoreV1Api(admin)
    core.patch_namespace(k8s_namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    template_ = client.AppsV1Api(admin).read_namespaced_deployment("expbot", NS).spec.template
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="expbot-dry-run"), spec=template_.spec)
    pod.spec.service_account_name = "default"
    core.create_namespaced_pod(k8s_namespace, pod, dry_run="All")  # a violation is 403 Forbidden


def test_the_chart_service_account_may_do_what_serve_needs_and_no_more(installed, k8s_cluster):
    api = _impersonating(k8s_cluster)
    try:
        assert _allowed(api, "patch", "", "nodes", namespace=None)  # nodeHealth.enabled
        assert not _allowed(api, "delete", "", "nodes", namespace=None)
        assert not _allowed(api, "get", "", "secrets", namespace=NS)
        assert not _allowed(api, "create", "batch", "jobs", namespace="expbot")  # another namespace
        with pytest.raises(ApiException) as refused:
            client.CoreV1Api(api).list_namespaced_secret(NS)
        assert refused.value.status == 403
    finally:
        api.close()


@pytest.mark.slow
def test_the_whole_backend_runs_as_the_chart_service_account(k8s_cluster, installed, admin, tmp_path):
    """Launch -> Job -> SUCCEEDED -> PVC released, and logs, as system:serviceaccount:expbot-helm:expbot."""
    from core.model import State
    from tests.k8s.harness import running_expbot

    behaviour = {"ready": "200ms", "complete": "2s"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, NS, admin, pod_behaviour=behaviour, start=False) as w:
        w.bot.backend.batch.api_client.default_headers["Impersonate-User"] = SA_USER  # type: ignore[attr-defined]
        w.thread.start()
        done = w.launch("helm-ok --gpus 1 --gpu-type a100 -- python train.py")
        finished = w.wait_state(done.name, State.SUCCEEDED, State.FAILED, timeout=45)
        assert finished.state == State.SUCCEEDED, finished.state_reason
        wait_for(lambda: not w.pvc_exists(done.id), timeout=15, what="the PVC to be released")
        assert w.bot.backend.logs(done.id, 1) == ""  # pods/log allowed; KWOK pods have no log


def test_helm_itself_installs_upgrades_and_uninstalls_the_release(k8s_cluster, helm, admin):  # noqa: F811
    """`helm install` (its own apply and release record), an upgrade that changes the config, `helm uninstall`."""
    from tests.k8s.cluster_helpers import fresh_namespace
    from tests.k8s.helm_chart import CHART, run

    with fresh_namespace(admin, prefix="helm") as namespace:
        kube = ["--kubeconfig", str(k8s_cluster.kubeconfig), "--namespace", namespace]
        out = run(helm, "install", "bot", str(CHART), *kube, "--set", "image.tag=0.1.0")
        assert out.returncode == 0, out.stderr
        apps = client.AppsV1Api(admin)
        first = apps.read_namespaced_deployment("bot-expbot", namespace).spec.template.metadata.annotations
        assert client.CoreV1Api(admin).read_namespaced_service_account("bot-expbot", namespace)
        out = run(helm, "upgrade", "bot", str(CHART), *kube, "--reuse-values", "--set", "settings.EXPBOT_LOG_LEVEL=DEBUG")
        assert out.returncode == 0, out.stderr
        second = apps.read_namespaced_deployment("bot-expbot", namespace).spec.template.metadata.annotations
        assert second["checksum/config"] != first["checksum/config"]  # the settings changed: the pods roll
        out = run(helm, "uninstall", "bot", *kube, "--wait")
        assert out.returncode == 0, out.stderr
        with pytest.raises(ApiException) as gone:
            apps.read_namespaced_deployment("bot-expbot", namespace)
        assert gone.value.status == 404
