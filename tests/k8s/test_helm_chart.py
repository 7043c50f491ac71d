"""deploy/helm/expbot: `helm lint`, `helm template` against the kustomize base, and the rendered chart
applied to the real control plane with the backend run as the chart's ServiceAccount.

helm is the one tests/cluster/build_helm.sh builds from its Go module (`make cluster`); without it
these tests skip, or fail when CI=true.
"""
from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.k8s.rbac_audit import granted, load
from tests.k8s.test_deploy_rbac import BASE, _allowed, _one, admin, kubectl, rendered  # noqa: F401
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "expbot"
NS = "expbot-helm"
SA_USER = f"system:serviceaccount:{NS}:expbot"


def _helm_path() -> Path:
    versions = dict(line.split("=", 1) for line in (ROOT / "tests" / "cluster" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    cache = Path(os.environ.get("EXPBOT_TESTBED_CACHE", Path.home() / ".cache" / "expbot-testbed"))
    return cache / f"helm-{versions['HELM_VERSION']}" / "bin" / "helm"


@pytest.fixture(scope="module")
def helm() -> str:
    """tests/cluster/build_helm.sh's helm (not built here: `make cluster` does)."""
    path = _helm_path()
    if not path.exists():
        message = f"no helm at {path}: run `make cluster` (tests/cluster/build_helm.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return str(path)


def _run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"HELM_CACHE_HOME": "/tmp/expbot-helm/cache", "HELM_CONFIG_HOME": "/tmp/expbot-helm/config",
                        "HELM_DATA_HOME": "/tmp/expbot-helm/data"}  # never the user's repositories or plugins
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, env=env)


def template(helm: str, *values: str, namespace: str = "expbot") -> list[dict[str, Any]]:
    """The chart rendered as release `expbot` with `--set`-style values."""
    args = [arg for value in values for arg in ("--set", value)]
    out = _run(helm, "template", "expbot", str(CHART), "--namespace", namespace, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def refusal(helm: str, *values: str) -> str:
    """helm template's error for values the chart refuses (it must refuse them)."""
    args = [arg for value in values for arg in ("--set", value)]
    out = _run(helm, "template", "expbot", str(CHART), *args)
    assert out.returncode != 0, f"{values} rendered:\n{out.stdout[:500]}"
    return out.stderr.strip()


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(docs)["env"]}


def _settings(docs: list[dict[str, Any]]) -> dict[str, str]:
    return next(d for d in docs if d["kind"] == "ConfigMap" and "EXPBOT_BACKEND" in d.get("data", {}))["data"]


# --- lint and template ----------------------------------------------------------------------------
@pytest.mark.parametrize("values", [[], ["slack.mode=socket"], ["slack.mode=off", "serviceMonitor.enabled=true"],
                                    ["backend=local", "replicaCount=1", "database.urlSecret.key="],
                                    ["nodeHealth.enabled=true", "jobsNamespace=ml-jobs"]])
def test_helm_lint_passes_strictly(helm, values):
    out = _run(helm, "lint", "--strict", str(CHART), *[a for v in values for a in ("--set", v)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def test_the_chart_renders_what_the_kustomize_base_does(helm, rendered):
    chart = template(helm)
    assert sorted(d["kind"] for d in chart) == sorted(d["kind"] for d in rendered if d["kind"] != "Namespace")
    assert granted(chart, "Role") == granted(load(BASE / "rbac.yaml"), "Role")  # the same least privilege
    assert _one(chart, "RoleBinding")["subjects"] == [{"kind": "ServiceAccount", "name": "expbot", "namespace": "expbot"}]
    settings = _settings(rendered)
    assert {k: v for k, v in _settings(chart).items() if k != "EXPBOT_LEASE_NAME"} == settings
    chart_toml = next(d for d in chart if d["kind"] == "ConfigMap" and "expbot.toml" in d["data"])["data"]["expbot.toml"]
    assert tomllib.loads(chart_toml) == tomllib.loads((BASE / "expbot.toml").read_text())

    ours, theirs = _one(chart, "Deployment")["spec"], _one(rendered, "Deployment")["spec"]
    assert ours["replicas"] == theirs["replicas"] and ours["strategy"] == theirs["strategy"]
    pod, base_pod = ours["template"]["spec"], theirs["template"]["spec"]
    for key in ("securityContext", "terminationGracePeriodSeconds", "automountServiceAccountToken", "serviceAccountName"):
        assert pod[key] == base_pod[key], key
    assert pod["volumes"][:2] == base_pod["volumes"][:2]  # tmp and data emptyDirs
    container, base_container = pod["containers"][0], base_pod["containers"][0]
    for key in ("command", "args", "ports", "startupProbe", "livenessProbe", "readinessProbe", "resources",
                "securityContext", "volumeMounts"):
        assert container[key] == base_container[key], key
    base_env = {e["name"]: e for e in base_container["env"]}
    assert _env(chart) == base_env  # HTTP mode: the same secret references, downward API and MPLCONFIGDIR

    service, base_service = _one(chart, "Service"), _one(rendered, "Service")
    assert service["spec"]["ports"] == base_service["spec"]["ports"]
    assert service["spec"]["selector"].items() <= ours["template"]["metadata"]["labels"].items()
    assert _one(chart, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert _one(chart, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == ours["selector"]["matchLabels"]
    assert "Secret" not in {d["kind"] for d in chart}  # references only


def test_node_health_is_the_same_cluster_role_and_off_by_default(helm):
    assert granted(template(helm), "ClusterRole") == set()
    chart = template(helm, "nodeHealth.enabled=true")
    assert granted(chart, "ClusterRole") == granted(load(BASE / "node-health" / "clusterrole.yaml"), "ClusterRole")
    binding = _one(chart, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "expbot", "namespace": "expbot"}]
    assert binding["roleRef"]["name"] == _one(chart, "ClusterRole")["metadata"]["name"]


def test_the_kueue_role_is_the_kustomize_one_and_off_by_default(helm):
    assert not [d for d in template(helm) if d["metadata"]["name"].endswith("-kueue")]
    chart = [d for d in template(helm, "kueue.enabled=true") if d["metadata"]["name"].endswith("-kueue")]
    kustomized = load(BASE / "kueue" / "role.yaml")
    assert granted(chart, "Role") == granted(kustomized, "Role") != set()
    assert sorted(d["kind"] for d in chart) == ["Role", "RoleBinding"]


def test_image_tag_defaults_to_the_app_version_never_latest(helm):
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert _container(template(helm))["image"] == f"expbot:{chart_yaml['appVersion']}"
    kustomized = yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"][0]["newTag"]
    assert kustomized == chart_yaml["appVersion"]  # both install the same release
    assert _container(template(helm, "image.repository=registry.example.com/ml/expbot", "image.tag=0.2.0"))["image"] == \
        "registry.example.com/ml/expbot:0.2.0"
    digest = "sha256:" + "ab" * 32
    assert _container(template(helm, f"image.digest={digest}"))["image"] == f"expbot@{digest}"
    assert "image.tag: \"latest\" is refused" in refusal(helm, "image.tag=latest")
    assert yaml.safe_load((CHART / "values.yaml").read_text())["image"]["tag"] != "latest"


def test_slack_modes_wire_the_right_secrets(helm):
    http = _env(template(helm))
    assert "EXPBOT_SLACK_APP_TOKEN" not in http
    assert "optional" not in http["EXPBOT_SLACK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]  # required over HTTP
    socket = _env(template(helm, "slack.mode=socket"))
    assert socket["EXPBOT_SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "expbot-secrets", "key": "EXPBOT_SLACK_APP_TOKEN"}
    assert socket["EXPBOT_SLACK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "optional" not in socket["EXPBOT_SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"]
    off = _env(template(helm, "slack.mode=off"))
    assert not {k for k in off if k.startswith("EXPBOT_SLACK_")}
    assert "EXPBOT_REPORT_SECRET" in off


def test_secret_references_and_the_postgresql_url_secret(helm):
    env = _env(template(helm, "secrets.name=bot-secrets", "database.urlSecret.name=pg-app", "database.urlSecret.key=uri"))
    assert env["EXPBOT_SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "bot-secrets"
    assert env["EXPBOT_REPORT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "bot-secrets"
    assert env["EXPBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg-app", "key": "uri"}
    sqlite = template(helm, "replicaCount=1", "database.urlSecret.key=")
    assert "EXPBOT_DATABASE_URL" not in _env(sqlite)
    assert "set database.urlSecret (PostgreSQL) or replicaCount 1" in refusal(helm, "database.urlSecret.key=")


def test_backend_namespace_and_settings(helm, tmp_path):
    docs = template(helm, "jobsNamespace=ml-jobs", "settings.EXPBOT_SLACK_DEFAULT_CHANNEL=C0EXP", namespace="ops")
    settings = _settings(docs)
    assert settings["EXPBOT_K8S_NAMESPACE"] == "ml-jobs" and settings["EXPBOT_BACKEND"] == "kubernetes"
    assert settings["EXPBOT_REPORT_URL"] == "http://expbot.ops.svc:3000/report"
    assert settings["EXPBOT_SLACK_DEFAULT_CHANNEL"] == "C0EXP"
    assert _one(docs, "Role")["metadata"]["namespace"] == "ml-jobs"  # the Jobs' namespace
    assert _one(docs, "RoleBinding")["subjects"][0]["namespace"] == "ops"  # bound to the ServiceAccount where it lives
    local = template(helm, "backend=local", "replicaCount=1", "database.urlSecret.key=")
    assert _settings(local)["EXPBOT_BACKEND"] == "local" and "Role" not in {d["kind"] for d in local}
    assert "replicaCount must be 1" in refusal(helm, "backend=local")
    assert "only EXPBOT_* settings" in refusal(helm, "settings.LOG_LEVEL=DEBUG")
    assert "/slack/mode" in refusal(helm, "slack.mode=rtm")  # the schema's check


def test_the_toml_config_is_a_value_and_a_change_rolls_the_pods(helm, tmp_path):
    toml = tmp_path / "expbot.toml"
    toml.write_text('[gpu_types.l4]\nprice_per_hour = 0.8\n')
    out = _run(helm, "template", "expbot", str(CHART), "--set-file", f"config={toml}")
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    file_map = next(d for d in docs if d["kind"] == "ConfigMap" and "expbot.toml" in d["data"])
    assert tomllib.loads(file_map["data"]["expbot.toml"]) == {"gpu_types": {"l4": {"price_per_hour": 0.8}}}
    checksum = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum != _one(template(helm), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_the_service_monitor_is_optional_and_scrapes_metrics(helm):
    assert "ServiceMonitor" not in {d["kind"] for d in template(helm)}
    docs = template(helm, "serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom")
    monitor, service = _one(docs, "ServiceMonitor"), _one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"


def test_resources_security_context_and_pdb_are_values(helm):
    docs = template(helm, "resources.limits.memory=2Gi", "podDisruptionBudget.minAvailable=2",
                    "securityContext.runAsUser=20002", "replicaCount=3")
    assert _container(docs)["resources"]["limits"]["memory"] == "2Gi"
    assert _container(docs)["securityContext"]["runAsUser"] == 20002
    assert _one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert _one(docs, "Deployment")["spec"]["replicas"] == 3
    assert "PodDisruptionBudget" not in {d["kind"] for d in template(helm, "podDisruptionBudget.enabled=false")}


# --- on the control plane -------------------------------------------------------------------------
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
