"""The Kubernetes objects expbot creates: golden manifests plus the rules every Job must follow.

Regenerate the golden files with `UPDATE_GOLDEN=1 pytest tests/unit/test_k8s_manifests.py`
and review the diff.
"""
from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.k8s import manifests, names
from adapters.k8s.config import GPU_RESOURCE, GpuPool, K8sConfig
from adapters.metrics.prometheus import pod_selector
from core.ports import AttemptLaunch
from core.progress import attempt_token
from core.spec import ExperimentSpec

GOLDEN = Path(__file__).parent / "golden" / "k8s"
EXPERIMENT_ID = "0f3c9a7e5b2d4c1e8a6f9b3d7c5e1a20"
# What Kubernetes accepts as a label value (apimachinery's IsValidLabelValue).
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

A100_POOL = GpuPool(
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
    tolerations=({"key": "pool", "operator": "Equal", "value": "a100", "effect": "NoSchedule"},),
)


def full_config(**changes: Any) -> K8sConfig:
    """Every optional knob set."""
    fields: dict[str, Any] = {
        "namespace": "ml",
        "gpu_pools": {"a100": A100_POOL},
        "storage_class": "premium-rwo",
        "pvc_size": "200Gi",
        "queue_name": "team-a",
        "image_pull_secrets": ("regcred", "mirror"),
        "service_account": "expbot-jobs",
        "ttl_after_finished": timedelta(hours=6),
        "stop_grace": timedelta(seconds=45),
        "report_url": "http://expbot.ml.svc:8080/report",
        "report_secret": "s3cret",
        "pod_labels": {"team": "vision"},
        "pod_annotations": {"prometheus.io/scrape": "true"},
    }
    return K8sConfig(**(fields | changes))


def spec(**changes: Any) -> ExperimentSpec:
    fields: dict[str, Any] = {
        "name": "resnet-a100", "command": ("python", "train.py", "--lr", "3e-4"),
        "image": "ghcr.io/acme/train:1.2", "gpus": 4, "gpu_type": "a100", "cpu": "16", "memory": "64Gi",
        "env": {"WANDB_PROJECT": "resnet", "NCCL_DEBUG": "WARN"}, "project": "vision",
    }
    return ExperimentSpec(**(fields | changes))


def cpu_spec(**changes: Any) -> ExperimentSpec:
    return ExperimentSpec(**({"name": "tiny", "command": ("python", "-c", "print(1)"), "image": "python:3.11-slim"}
                             | changes))


def launch(s: ExperimentSpec | None = None, **changes: Any) -> AttemptLaunch:
    s = s or spec()
    fields: dict[str, Any] = {
        "experiment_id": EXPERIMENT_ID, "experiment_name": s.name, "attempt": 3, "spec": s,
        "owner": "Alice Smith <alice@example.com>", "resume_from": "/checkpoints/ckpt-001200.pt",
        "max_runtime": timedelta(hours=23, minutes=30, seconds=0.5),
    }
    return AttemptLaunch(**(fields | changes))


def cpu_launch(**changes: Any) -> AttemptLaunch:
    s = changes.pop("spec", None) or cpu_spec()
    fields: dict[str, Any] = {
        "experiment_id": "9a8b7c6d5e4f30211203948576a5b4c3", "experiment_name": s.name, "attempt": 1,
        "spec": s, "owner": "bob", "resume_from": None, "max_runtime": timedelta(hours=24),
    }
    return AttemptLaunch(**(fields | changes))


def check_golden(name: str, data: dict[str, Any]) -> None:
    """Compare `data` with tests/unit/golden/k8s/NAME.yaml (rewritten when UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120))
    assert path.exists(), f"missing {path}: run with UPDATE_GOLDEN=1 and review it"
    assert data == yaml.safe_load(path.read_text())


def container(job: dict[str, Any]) -> dict[str, Any]:
    [only] = job["spec"]["template"]["spec"]["containers"]
    return only


def env_of(job: dict[str, Any]) -> dict[str, str]:
    pairs = [(e["name"], e["value"]) for e in container(job)["env"]]
    assert len(pairs) == len(dict(pairs)), f"duplicate env names: {pairs}"
    return dict(pairs)


def all_labels(*objects: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for obj in objects:
        found += obj["metadata"].get("labels", {}).items()
        template = obj.get("spec", {}).get("template")
        if template:
            found += template["metadata"].get("labels", {}).items()
    return found


# ------------------------------------------------------------------------------------ golden
def test_golden_gpu_job_with_every_option():
    check_golden("job_a100_full", manifests.job(launch(avoid_nodes=("gpu-a100-3", "gpu-a100-1")), full_config()))


def test_golden_cpu_job_with_nothing_optional():
    check_golden("job_cpu_minimal", manifests.job(cpu_launch(), K8sConfig()))


def test_golden_pvcs():
    check_golden("pvc_full", manifests.pvc(launch(), full_config()))
    check_golden("pvc_minimal", manifests.pvc(cpu_launch(), K8sConfig()))


# ------------------------------------------------------------------------------ job rules
def test_gpu_requests_equal_limits_and_memory_is_not_overcommitted():
    resources = container(manifests.job(launch(), full_config()))["resources"]
    assert resources["requests"][GPU_RESOURCE] == resources["limits"][GPU_RESOURCE] == "4"
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "64Gi"
    assert resources["requests"]["cpu"] == "16" and "cpu" not in resources["limits"]


def test_cpu_job_asks_for_no_gpu_and_no_shared_memory_volume():
    job = manifests.job(cpu_launch(), K8sConfig())
    assert container(job)["resources"] == {}
    assert [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]] == ["checkpoints"]
    gpu_job = manifests.job(launch(), full_config())
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in gpu_job["spec"]["template"]["spec"]["volumes"]


@pytest.mark.parametrize("make", [lambda: manifests.job(launch(), full_config()),
                                  lambda: manifests.job(cpu_launch(), K8sConfig())])
def test_kubernetes_never_retries_an_attempt(make):
    job = make()
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("left,deadline", [
    (timedelta(hours=23, minutes=30, seconds=0.5), 84601),
    (timedelta(seconds=59.01), 60),
    (timedelta(minutes=10), 600),
    (timedelta(0), 1),  # Kubernetes refuses 0; expbot ends it at once anyway
])
def test_active_deadline_is_what_is_left_of_the_max_runtime_rounded_up(left, deadline):
    job = manifests.job(launch(max_runtime=left), full_config())
    assert job["spec"]["template"]["spec"]["activeDeadlineSeconds"] == deadline
    assert deadline == max(1, math.ceil(left.total_seconds()))


def test_the_deadline_is_the_pods_so_waiting_for_a_node_spends_no_max_runtime():
    # A Job's activeDeadlineSeconds counts from the Job's creation: an attempt held Pending (no
    # capacity, a spot VM not there yet) longer than its max runtime was killed before it ran.
    job = manifests.job(launch(max_runtime=timedelta(hours=1)), full_config())
    assert "activeDeadlineSeconds" not in job["spec"]
    assert job["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 3600


def test_finished_jobs_are_collected_after_the_configured_ttl():
    assert manifests.job(launch(), full_config())["spec"]["ttlSecondsAfterFinished"] == 6 * 3600
    assert manifests.job(cpu_launch(), K8sConfig())["spec"]["ttlSecondsAfterFinished"] == 86400


def test_gpu_jobs_tolerate_the_global_and_pool_taints_and_select_the_pools_nodes():
    config = full_config()
    pod = manifests.job(launch(), config)["spec"]["template"]["spec"]
    assert pod["tolerations"] == [*map(dict, config.gpu_tolerations), *map(dict, A100_POOL.tolerations)]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}


def test_a_gpu_type_without_a_pool_gets_only_the_global_tolerations():
    config = full_config()
    pod = manifests.job(launch(spec(gpu_type="h100")), config)["spec"]["template"]["spec"]
    assert pod["tolerations"] == [dict(t) for t in config.gpu_tolerations]
    assert "nodeSelector" not in pod


def test_cpu_jobs_get_no_gpu_tolerations_nor_node_selector_even_with_a_gpu_type():
    pod = manifests.job(cpu_launch(spec=cpu_spec(gpu_type="a100")), full_config())["spec"]["template"]["spec"]
    assert "tolerations" not in pod and "nodeSelector" not in pod


def test_expbot_env_overrides_the_users_variables_of_the_same_name():
    user_env = {"EXPBOT_ATTEMPT": "99", "EXPBOT_EXPERIMENT_ID": "someone-else",
                "EXPBOT_REPORT_TOKEN": "forged", "EXPBOT_CHECKPOINT_DIR": "/tmp", "MY_VAR": "kept"}
    env = env_of(manifests.job(launch(spec(env=user_env)), full_config()))
    assert env["EXPBOT_ATTEMPT"] == "3"
    assert env["EXPBOT_EXPERIMENT_ID"] == EXPERIMENT_ID
    assert env["EXPBOT_REPORT_TOKEN"] == attempt_token("s3cret", EXPERIMENT_ID, 3)
    assert env["EXPBOT_CHECKPOINT_DIR"] == "/checkpoints"
    assert env["MY_VAR"] == "kept"


def test_env_carries_the_attempt_contract():
    env = env_of(manifests.job(launch(), full_config()))
    assert env["EXPBOT_EXPERIMENT"] == "resnet-a100"
    assert env["EXPBOT_RESUME_FROM"] == "/checkpoints/ckpt-001200.pt"
    assert env["EXPBOT_REPORT_URL"] == "http://expbot.ml.svc:8080/report"
    assert env_of(manifests.job(cpu_launch(), K8sConfig()))["EXPBOT_RESUME_FROM"] == ""


@pytest.mark.parametrize("attempt", [1, 2, 17])
def test_report_token_is_the_attempts_hmac(attempt):
    env = env_of(manifests.job(launch(attempt=attempt), full_config()))
    assert env["EXPBOT_REPORT_TOKEN"] == attempt_token("s3cret", EXPERIMENT_ID, attempt)
    assert env["EXPBOT_REPORT_TOKEN"] != attempt_token("other", EXPERIMENT_ID, attempt)


def test_no_report_token_nor_url_without_a_secret():
    env = env_of(manifests.job(launch(), full_config(report_secret=None)))
    assert "EXPBOT_REPORT_TOKEN" not in env and "EXPBOT_REPORT_URL" not in env
    assert not any(name.startswith("EXPBOT_REPORT") for name in env_of(manifests.job(cpu_launch(), K8sConfig())))


@pytest.mark.parametrize("attempt", [1, 10, 123])
def test_job_name_and_its_pods_match_the_metrics_selector(attempt):
    job = manifests.job(launch(attempt=attempt), full_config())
    assert job["metadata"]["name"] == f"expbot-{EXPERIMENT_ID[:8]}-a{attempt}"
    assert job["metadata"]["name"] == names.job_name(EXPERIMENT_ID, attempt)
    selector = pod_selector()(EXPERIMENT_ID, attempt)
    pattern = re.fullmatch(r'exported_pod=~"(.*)"', selector)
    assert pattern is not None, selector
    regex = re.compile(pattern.group(1))
    assert regex.fullmatch(f"{job['metadata']['name']}-abcde")
    assert not regex.fullmatch(f"{names.job_name(EXPERIMENT_ID, attempt + 1)}-abcde")
    assert not regex.fullmatch(f"{names.job_name(EXPERIMENT_ID, attempt * 10)}-abcde")


@pytest.mark.parametrize("owner", [
    "Alice Smith <a@b>", "Zoë Ünal", "x" * 100, "--weird__", "@@@", "ü" * 70, "a²", "ok.name-1_2",
])
@pytest.mark.parametrize("name", ["a" * 40, "resnet-a100"])
def test_every_label_value_is_valid_for_kubernetes(owner, name):
    s = spec(name=name, project="Vision Team / 2026")
    job = manifests.job(launch(s, owner=owner, experiment_name=name), full_config())
    pvc = manifests.pvc(launch(s, owner=owner, experiment_name=name), full_config())
    for key, value in all_labels(job, pvc):
        assert len(value) <= 63 and LABEL_VALUE.match(value), f"{key}={value!r} is not a valid label value"


def test_labels_identify_the_attempt():
    job = manifests.job(launch(), full_config())
    labels = job["metadata"]["labels"]
    assert labels[names.MANAGED_BY] == "expbot" and labels[names.EXPERIMENT] == EXPERIMENT_ID
    assert labels[names.ATTEMPT] == "3" and labels[names.OWNER] == "Alice_Smith__alice_example.com"
    assert labels[names.NAME] == "resnet-a100" and labels[names.PROJECT] == "vision"


def test_pod_labels_and_annotations_are_added_but_never_replace_expbots_labels():
    config = full_config(pod_labels={"team": "vision", names.ATTEMPT: "1", names.MANAGED_BY: "someone"})
    template = manifests.job(launch(), config)["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "vision"
    assert template["labels"][names.ATTEMPT] == "3" and template["labels"][names.MANAGED_BY] == "expbot"
    assert template["annotations"] == {"prometheus.io/scrape": "true"}
    assert "annotations" not in manifests.job(cpu_launch(), K8sConfig())["spec"]["template"]["metadata"]


def test_image_pull_secrets_and_service_account():
    pod = manifests.job(launch(), full_config())["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["serviceAccountName"] == "expbot-jobs"
    assert pod["terminationGracePeriodSeconds"] == 45
    bare = manifests.job(cpu_launch(), K8sConfig())["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in bare and "serviceAccountName" not in bare


def test_kueue_queue_label_and_suspend_only_with_a_queue():
    job = manifests.job(launch(), full_config())
    assert job["metadata"]["labels"][names.KUEUE_QUEUE] == "team-a" and job["spec"]["suspend"] is True
    plain = manifests.job(launch(), full_config(queue_name=None))
    assert names.KUEUE_QUEUE not in plain["metadata"]["labels"] and "suspend" not in plain["spec"]


def test_the_job_mounts_the_experiments_claim_and_the_pvc_has_that_name():
    config = full_config()
    job, pvc = manifests.job(launch(), config), manifests.pvc(launch(), config)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["name"] == names.pvc_name(EXPERIMENT_ID)
    assert {"name": "checkpoints", "mountPath": "/checkpoints"} in container(job)["volumeMounts"]
    assert pvc["spec"]["storageClassName"] == "premium-rwo"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert "storageClassName" not in manifests.pvc(cpu_launch(), K8sConfig())["spec"]
    assert job["metadata"]["namespace"] == pvc["metadata"]["namespace"] == "ml"


# ------------------------------------------------------------------------- failure evidence
@pytest.mark.parametrize("make", [lambda: manifests.job(launch(), full_config()),
                                  lambda: manifests.job(cpu_launch(), K8sConfig())])
def test_a_failed_attempts_last_log_lines_come_with_its_pod_status(make):
    assert container(make())["terminationMessagePolicy"] == "FallbackToLogsOnError"


def _required_terms(job: dict[str, Any]) -> list[dict[str, Any]]:
    affinity = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    return affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


NOT_IN = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["gpu-a100-1", "gpu-a100-3"]}


def test_no_affinity_while_no_node_is_avoided():
    assert "affinity" not in manifests.job(launch(), full_config())["spec"]["template"]["spec"]
    assert "affinity" not in manifests.job(cpu_launch(), K8sConfig())["spec"]["template"]["spec"]


@pytest.mark.parametrize("avoid", [("gpu-a100-3", "gpu-a100-1"), ("gpu-a100-1", "gpu-a100-3", "gpu-a100-1")])
def test_avoided_nodes_become_one_required_not_in_term_in_a_stable_order(avoid):
    job = manifests.job(launch(avoid_nodes=avoid), full_config())
    assert _required_terms(job) == [{"matchExpressions": [NOT_IN]}]
    # The pool's nodeSelector still applies: both must hold.
    assert job["spec"]["template"]["spec"]["nodeSelector"] == A100_POOL.node_selector
    assert job == manifests.job(launch(avoid_nodes=avoid), full_config())


def test_cpu_jobs_avoid_nodes_too():
    job = manifests.job(cpu_launch(avoid_nodes=("cpu-7",)), K8sConfig())
    assert _required_terms(job) == [{"matchExpressions": [{**NOT_IN, "values": ["cpu-7"]}]}]


def test_the_exclusion_is_added_to_every_ored_term_of_an_existing_affinity():
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    existing = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [zone]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["big-1"]}]},
            ]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{**zone, "values": ["a"]}]}}],
        },
        "podAntiAffinity": {"x": 1},
    }
    before = yaml.safe_dump(existing)
    merged = manifests.avoiding_nodes(existing, ("gpu-a100-3", "gpu-a100-1"))
    terms = merged["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [zone, NOT_IN]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["big-1"]}], "matchExpressions": [NOT_IN]},
    ]
    assert merged["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == \
        existing["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert merged["podAntiAffinity"] == {"x": 1}
    assert yaml.safe_dump(existing) == before  # the pool's own affinity is not changed
    assert "&id" not in yaml.safe_dump(merged)  # no shared objects: the manifest dumps plainly


def test_an_affinity_without_required_terms_gets_one():
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    merged = manifests.avoiding_nodes(preferred, ("n1",))
    assert merged["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [{**NOT_IN, "values": ["n1"]}]}]}
