"""deploy/helm/expbot: `helm lint` and `helm template`, against the kustomize base and its Role.

helm is the one tests/cluster/build_helm.sh builds from its Go module (`make cluster`); without it
these tests skip, or fail when CI=true. tests/k8s/test_helm_install.py applies the chart to the
control plane.
"""
from __future__ import annotations

import json
import tomllib

import pytest
import yaml

from tests.k8s.helm_chart import CHART, helm_binary, refusal, run, template
from tests.k8s.helm_chart import container as _container
from tests.k8s.helm_chart import env as _env
from tests.k8s.helm_chart import settings as _settings
from tests.k8s.rbac_audit import granted, load
from tests.k8s.test_deploy_rbac import BASE, _one, kubectl, rendered  # noqa: F401


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


# --- lint and template ----------------------------------------------------------------------------
@pytest.mark.parametrize("values", [[], ["slack.mode=socket"], ["slack.mode=off", "serviceMonitor.enabled=true"],
                                    ["backend=local", "replicaCount=1", "database.urlSecret.key="],
                                    ["nodeHealth.enabled=true", "jobsNamespace=ml-jobs"]])
def test_helm_lint_passes_strictly(helm, values):
    out = run(helm, "lint", "--strict", str(CHART), *[a for v in values for a in ("--set", v)])
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


def test_a_misspelt_value_is_refused_and_every_value_is_typed(helm):
    assert "additional properties 'replicas' not allowed" in refusal(helm, "replicas=3")  # replicaCount
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])


def test_the_toml_config_is_a_value_and_a_change_rolls_the_pods(helm, tmp_path):
    toml = tmp_path / "expbot.toml"
    toml.write_text('[gpu_types.l4]\nprice_per_hour = 0.8\n')
    out = run(helm, "template", "expbot", str(CHART), "--set-file", f"config={toml}")
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
