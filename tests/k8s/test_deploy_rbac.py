"""deploy/kubernetes on a real control plane: what its ServiceAccount may do, and may not.

The base is rendered with the test bed's kubectl (`kubectl kustomize`), applied as the admin, and
then exercised as `system:serviceaccount:expbot:expbot` through impersonation.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from adapters.k8s.leader import LeaseElector
from tests.k8s.cluster_helpers import gpu_job, job_pods, lifecycle, wait_gone
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
NS = "expbot"
SA_USER = f"system:serviceaccount:{NS}:expbot"
SECRET_KEYS = {"EXPBOT_SLACK_BOT_TOKEN", "EXPBOT_SLACK_SIGNING_SECRET", "EXPBOT_REPORT_SECRET", "EXPBOT_DATABASE_URL"}


# --- fixtures -------------------------------------------------------------------------------------
def _testbed_kubectl() -> Path | None:
    """The kubectl that tests/cluster/build.sh built (without building anything)."""
    if os.environ.get("EXPBOT_TESTBED_BIN"):
        return Path(os.environ["EXPBOT_TESTBED_BIN"]) / "kubectl"
    versions = dict(line.split("=", 1) for line in (ROOT / "tests" / "cluster" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    cache = Path(os.environ.get("EXPBOT_TESTBED_CACHE", Path.home() / ".cache" / "expbot-testbed"))
    return cache / f"k8s-{versions['K8S_VERSION']}-etcd-{versions['ETCD_VERSION']}-kwok-{versions['KWOK_VERSION']}" / "bin" / "kubectl"


@pytest.fixture(scope="module")
def kubectl() -> str:
    """The test bed's kubectl (its kustomize matches the control plane), else one on PATH."""
    built = _testbed_kubectl()
    path = str(built) if built and built.exists() else shutil.which("kubectl")
    if not path:
        pytest.skip("no kubectl (tests/cluster/build.sh builds one)")
    return path


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> list[dict[str, Any]]:
    out = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def admin(k8s_cluster: Any) -> Iterator[Any]:
    api = k8s_cluster.api_client()
    yield api
    api.close()


@pytest.fixture(scope="module")
def deployed(k8s_cluster: Any, kubectl: str, rendered: list[dict[str, Any]], admin: Any) -> Iterator[list[dict[str, Any]]]:
    """The base applied with kubectl; namespace expbot is deleted afterwards."""
    core = client.CoreV1Api(admin)

    def absent() -> bool:  # a previous run's namespace may still be terminating
        try:
            core.read_namespace(NS)
            return False
        except ApiException as e:
            if e.status == 404:
                return True
            raise

    wait_for(absent, timeout=90, what=f"namespace {NS} from an earlier run to be gone", interval=0.5)
    t0 = time.monotonic()
    subprocess.run([kubectl, "--kubeconfig", str(k8s_cluster.kubeconfig), "apply", "-f", "-"],
                   input=yaml.safe_dump_all(rendered), capture_output=True, text=True, timeout=60, check=True)
    wait_for(lambda: _allowed(_impersonating(k8s_cluster), "list", "batch", "jobs"), timeout=10,
             what="the RoleBinding to take effect")
    print(f"applied deploy/kubernetes in {time.monotonic() - t0:.2f}s")
    yield rendered
    core.delete_namespace(NS, propagation_policy="Background")


@pytest.fixture
def as_expbot(k8s_cluster: Any, deployed: Any) -> Iterator[Any]:
    """An ApiClient that acts as the expbot ServiceAccount."""
    api = _impersonating(k8s_cluster)
    yield api
    api.close()


def _impersonating(k8s_cluster: Any) -> Any:
    api = k8s_cluster.api_client()
    api.default_headers["Impersonate-User"] = SA_USER
    return api


def _allowed(api: Any, verb: str, group: str, resource: str, *, subresource: str = "",
             namespace: str | None = NS, name: str = "") -> bool:
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(
            verb=verb, group=group, resource=resource, subresource=subresource or None,
            namespace=namespace, name=name or None)))
    return bool(client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed)


def _forbidden(call: Any) -> None:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 403, f"expected 403 Forbidden, got {info.value.status}: {info.value.reason}"


def _one(docs: list[dict[str, Any]], kind: str, name_prefix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"{kind} {name_prefix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


# --- the manifests ------------------------------------------------------------------------------
def test_the_base_renders_what_production_needs(rendered):
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Role",
                     "RoleBinding", "Service", "ServiceAccount"]
    assert "Secret" not in kinds  # only references: the Secret is created by hand
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "expbot"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NS
    binding = _one(rendered, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "expbot", "namespace": NS}]
    settings = next(d for d in rendered if d["kind"] == "ConfigMap" and "EXPBOT_BACKEND" in d.get("data", {}))
    assert settings["metadata"]["name"].startswith("expbot-config-")  # + content hash: a change rolls the pods
    assert {
        "EXPBOT_BACKEND": "kubernetes", "EXPBOT_K8S_NAMESPACE": NS, "EXPBOT_HTTP_PORT": "3000",
        "EXPBOT_REPORT_URL": "http://expbot.expbot.svc:3000/report", "EXPBOT_LEADER_ELECTION": "true",
        "EXPBOT_DATA_DIR": "/var/lib/expbot", "EXPBOT_CONFIG_FILE": "/etc/expbot/expbot.toml",
    }.items() <= settings["data"].items()
    assert all(key.startswith("EXPBOT_") for key in settings["data"])  # loaded whole with envFrom
    assert not any(key in doc.get("data", {}) for doc in rendered for key in SECRET_KEYS)

    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for key in SECRET_KEYS:
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "expbot-secrets", "key": key}
    assert env["EXPBOT_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["EXPBOT_POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    config_file = next(d for d in rendered if d["kind"] == "ConfigMap" and "expbot.toml" in d.get("data", {}))
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/etc/expbot"]]["configMap"]["name"] == config_file["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/var/lib/expbot"]]
    # The Service reaches the Deployment's pods on the named port.
    service = _one(rendered, "Service")
    labels = _one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}]


def test_an_overlay_moves_everything_to_another_namespace(kubectl, tmp_path):
    """The README's overlay recipe: namespace, image, settings; the RoleBinding follows."""
    shutil.copytree(BASE, tmp_path / "kubernetes")
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod" / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": "ml-team", "resources": ["../kubernetes"],
        "images": [{"name": "expbot", "newName": "registry.example.com/ml/expbot", "newTag": "0.1.0"}],
        "configMapGenerator": [{"name": "expbot-config", "behavior": "merge", "literals": [
            "EXPBOT_K8S_NAMESPACE=ml-team", "EXPBOT_REPORT_URL=http://expbot.ml-team.svc:3000/report"]}],
        "patches": [{"patch": "$patch: delete\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: expbot\n"}],
    }))
    out = subprocess.run([kubectl, "kustomize", str(tmp_path / "prod")], capture_output=True, text=True, timeout=60,
                         check=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert "Namespace" not in [d["kind"] for d in docs]
    assert {d["metadata"]["namespace"] for d in docs} == {"ml-team"}
    assert _one(docs, "RoleBinding")["subjects"][0]["namespace"] == "ml-team"
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/ml/expbot:0.1.0"
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and "EXPBOT_BACKEND" in d.get("data", {}))
    assert settings["data"]["EXPBOT_K8S_NAMESPACE"] == "ml-team" and settings["data"]["EXPBOT_BACKEND"] == "kubernetes"
    assert pod["containers"][0]["envFrom"][0]["configMapRef"]["name"] == settings["metadata"]["name"]


def test_the_applied_deployment(deployed, admin):
    deployment = client.AppsV1Api(admin).read_namespaced_deployment("expbot", NS)
    spec = deployment.spec.template.spec
    (container,) = spec.containers
    assert deployment.spec.replicas == 2
    assert spec.service_account_name == "expbot" and container.image == "expbot:0.1.0"
    assert container.command == ["expbot"] and container.args == ["serve"]
    assert (container.liveness_probe.http_get.path, container.liveness_probe.http_get.port) == ("/healthz", "http")
    assert (container.readiness_probe.http_get.path, container.readiness_probe.http_get.port) == ("/readyz", "http")
    assert [(p.name, p.container_port) for p in container.ports] == [("http", 3000)]
    assert spec.security_context.run_as_non_root is True and spec.security_context.run_as_user == 10001
    assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
    sc = container.security_context
    assert sc.read_only_root_filesystem is True and sc.allow_privilege_escalation is False
    assert sc.capabilities.drop == ["ALL"] and sc.run_as_non_root is True
    assert container.resources.requests and container.resources.limits


def test_the_pod_template_passes_pod_security_restricted(deployed, admin, k8s_namespace):
    """Server-side dry run in a namespace that enforces the `restricted` profile."""
    core = client.CoreV1Api(admin)
    core.patch_namespace(k8s_namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    template = client.AppsV1Api(admin).read_namespaced_deployment("expbot", NS).spec.template
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="expbot-dry-run"), spec=template.spec)
    pod.spec.service_account_name = "default"
    core.create_namespaced_pod(k8s_namespace, pod, dry_run="All")  # a violation is 403 Forbidden


# --- what the ServiceAccount may do -------------------------------------------------------------
def test_it_runs_a_job_and_stops_it_without_deleting_pods_itself(as_expbot, admin):
    batch, core = client.BatchV1Api(as_expbot), client.CoreV1Api(as_expbot)
    labels, annotations = lifecycle(ready="100ms", complete="24h", terminate="100ms")
    job = gpu_job("rbac-check", gpus=1, labels=labels, annotations=annotations)
    batch.create_namespaced_job(NS, job)
    assert [j.metadata.name for j in batch.list_namespaced_job(NS).items] == ["rbac-check"]
    response = batch.list_namespaced_job(NS, watch=True, timeout_seconds=1, _preload_content=False)
    assert response.status == 200
    response.read()  # the server ends the watch after 1 s
    response.release_conn()
    pods = wait_for(lambda: job_pods(core, NS, "rbac-check"), timeout=20, what="the Job's pod")
    pod_name = pods[0].metadata.name
    # As the backend's stop(): delete the Job, and the garbage collector (not expbot) removes its pod.
    batch.delete_namespaced_job("rbac-check", NS, body=client.V1DeleteOptions(propagation_policy="Background"))
    admin_core = client.CoreV1Api(admin)
    wait_gone(lambda: admin_core.read_namespaced_pod(pod_name, NS), timeout=60, what="the Job's pod to be deleted")


def test_it_manages_checkpoint_volume_claims(as_expbot):
    core = client.CoreV1Api(as_expbot)
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ckpt-rbac"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    assert core.create_namespaced_persistent_volume_claim(NS, claim).metadata.name == "ckpt-rbac"
    core.delete_namespaced_persistent_volume_claim("ckpt-rbac", NS)


def test_it_can_hold_the_leader_lease(as_expbot, admin):
    elector = LeaseElector(as_expbot, namespace=NS, name="expbot-leader", identity="expbot-0",
                           lease_duration=3, renew_deadline=2, retry_period=0.5)
    stop, calls = threading.Event(), []
    thread = threading.Thread(target=elector.run, daemon=True,
                              args=(stop, lambda: calls.append("started"), lambda: calls.append("stopped")))
    thread.start()
    try:
        wait_for(lambda: elector.is_leader, timeout=5, what="the lease")  # create
        lease = client.CoordinationV1Api(admin).read_namespaced_lease("expbot-leader", NS)
        wait_for(lambda: client.CoordinationV1Api(admin).read_namespaced_lease("expbot-leader", NS)
                 .spec.renew_time > lease.spec.renew_time, timeout=3, what="a renewal")  # get + update
    finally:
        stop.set()
        thread.join(timeout=10)
        elector.close()
    assert calls == ["started", "stopped"]
    assert not client.CoordinationV1Api(admin).read_namespaced_lease("expbot-leader", NS).spec.holder_identity
    # The elector really acts as the ServiceAccount (its private client keeps Impersonate-User):
    # in another namespace it is refused, and it says so rather than raising.
    outsider = LeaseElector(as_expbot, namespace="default", name="expbot-leader", identity="expbot-0",
                            lease_duration=3, renew_deadline=2, retry_period=0.5)
    assert outsider.step(lambda: calls.append("started elsewhere"), lambda: None) == 0.5
    outsider.close()
    assert calls == ["started", "stopped"] and not outsider.is_leader
    with pytest.raises(ApiException) as absent:
        client.CoordinationV1Api(admin).read_namespaced_lease("expbot-leader", "default")
    assert absent.value.status == 404


@pytest.mark.parametrize(("verb", "group", "resource", "subresource"), [
    ("create", "batch", "jobs", ""), ("list", "batch", "jobs", ""),
    ("watch", "batch", "jobs", ""), ("delete", "batch", "jobs", ""), ("patch", "batch", "jobs", ""),
    ("create", "", "services", ""),
    ("list", "", "pods", ""), ("watch", "", "pods", ""), ("get", "", "pods", "log"),
    ("create", "", "persistentvolumeclaims", ""), ("delete", "", "persistentvolumeclaims", ""),
    ("get", "coordination.k8s.io", "leases", ""), ("create", "coordination.k8s.io", "leases", ""),
    ("update", "coordination.k8s.io", "leases", ""),
])
def test_allowed_in_its_namespace(as_expbot, verb, group, resource, subresource):
    assert _allowed(as_expbot, verb, group, resource, subresource=subresource)


# --- and what it may not ------------------------------------------------------------------------
@pytest.mark.parametrize(("verb", "group", "resource", "subresource", "namespace"), [
    ("list", "", "secrets", "", NS), ("get", "", "secrets", "", NS), ("get", "", "configmaps", "", NS),
    ("create", "", "pods", "", NS), ("delete", "", "pods", "", NS), ("create", "", "pods", "exec", NS),
    ("update", "batch", "jobs", "", NS), ("delete", "", "services", "", NS), ("update", "", "services", "", NS), ("deletecollection", "batch", "jobs", "", NS),
    ("update", "batch", "jobs", "status", NS), ("delete", "coordination.k8s.io", "leases", "", NS),
    ("create", "apps", "deployments", "", NS), ("patch", "apps", "deployments", "", NS),
    ("create", "rbac.authorization.k8s.io", "roles", "", NS),
    ("create", "rbac.authorization.k8s.io", "rolebindings", "", NS),
    ("create", "", "serviceaccounts", "token", NS),
    # Nothing calls these (tests/k8s/test_least_privilege.py derives the Role from serve's requests).
    ("get", "batch", "jobs", "", NS), ("get", "", "pods", "", NS), ("list", "", "events", "", NS),
    ("get", "", "persistentvolumeclaims", "", NS), ("list", "", "persistentvolumeclaims", "", NS),
    ("list", "batch", "jobs", "", "default"), ("create", "batch", "jobs", "", "default"),
    ("get", "", "pods", "log", "default"), ("update", "coordination.k8s.io", "leases", "", "kube-system"),
    ("list", "", "nodes", "", None), ("delete", "", "nodes", "", None), ("list", "", "namespaces", "", None),
    ("create", "", "persistentvolumes", "", None),
])
def test_denied(as_expbot, verb, group, resource, subresource, namespace):
    assert not _allowed(as_expbot, verb, group, resource, subresource=subresource, namespace=namespace)


def test_forbidden_calls_are_refused_by_the_api_server(as_expbot):
    core, batch = client.CoreV1Api(as_expbot), client.BatchV1Api(as_expbot)
    _forbidden(lambda: core.list_namespaced_secret(NS))
    _forbidden(lambda: core.read_namespaced_secret("expbot-secrets", NS))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "direct"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    _forbidden(lambda: core.create_namespaced_pod(NS, pod))
    _forbidden(lambda: core.delete_node("gpu-node-that-may-not-exist"))
    _forbidden(lambda: core.list_node())
    _forbidden(lambda: batch.list_namespaced_job("default"))
    _forbidden(lambda: batch.create_namespaced_job("default", gpu_job("elsewhere", gpus=1)))
    _forbidden(lambda: batch.list_job_for_all_namespaces())
    _forbidden(lambda: client.CoordinationV1Api(as_expbot).list_lease_for_all_namespaces())


def test_impersonation_is_the_service_account(as_expbot):
    review = client.AuthenticationV1Api(as_expbot).create_self_subject_review(client.V1SelfSubjectReview())
    info = review.status.user_info
    assert info.username == SA_USER
    assert {"system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"} <= set(info.groups)


def test_the_whole_backend_runs_as_the_service_account(k8s_cluster, deployed, admin, tmp_path):
    """Launch -> Job -> SUCCEEDED -> PVC released, and logs, with only the Role's verbs."""
    from core.model import State
    from tests.k8s.harness import running_expbot

    behaviour = {"ready": "200ms", "complete": "2s"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, NS, admin, pod_behaviour=behaviour, start=False) as w:
        w.bot.backend.batch.api_client.default_headers["Impersonate-User"] = SA_USER  # type: ignore[attr-defined]
        w.thread.start()
        done = w.launch("rbac-ok --gpus 1 --gpu-type a100 -- python train.py")
        finished = w.wait_state(done.name, State.SUCCEEDED, State.FAILED, timeout=45)
        assert finished.state == State.SUCCEEDED, finished.state_reason
        wait_for(lambda: not w.pvc_exists(done.id), timeout=15, what="the PVC to be released")
        assert w.bot.backend.logs(done.id, 1) == ""  # allowed (pods/log), and KWOK pods have no log: "" not an error
