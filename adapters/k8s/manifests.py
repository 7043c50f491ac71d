"""Pure builders of expbot's Kubernetes objects: one Job per attempt, one PVC per experiment."""
from __future__ import annotations

import copy
import math
from typing import Any

from adapters.k8s import names
from adapters.k8s.config import GPU_RESOURCE, K8sConfig
from core.attempt_env import AttemptPlaces, attempt_env
from core.ports import AttemptLaunch
from core.rendezvous import RENDEZVOUS_NAMES, rendezvous_env

CONTAINER = "train"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def labels(experiment_id: str, name: str, owner: str, project: str) -> dict[str, str]:
    """Labels on every object of one experiment (the watch selects on the managed-by one)."""
    return {
        names.MANAGED_BY: names.MANAGER,
        names.EXPERIMENT: experiment_id,
        names.NAME: names.label_value(name),
        names.OWNER: names.label_value(owner),
        names.PROJECT: names.label_value(project),
    }


def pvc(launch: AttemptLaunch, config: K8sConfig) -> dict[str, Any]:
    """The experiment's checkpoint volume claim: created by its first attempt, reused by the rest."""
    storage_class, modes = config.storage_class, config.pvc_access_modes
    if launch.spec.nodes > 1:
        # Every pod of the gang mounts it, on different nodes: only a shared (RWX) volume can be.
        shared = config.shared_storage()
        assert shared is not None, "check_fits refuses a gang without shared storage"
        storage_class, modes = shared
    spec: dict[str, Any] = {
        "accessModes": list(modes),
        "resources": {"requests": {"storage": config.pvc_size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": names.pvc_name(launch.experiment_id),
            "namespace": config.namespace,
            "labels": labels(launch.experiment_id, launch.experiment_name, launch.owner, launch.spec.project),
        },
        "spec": spec,
    }


def job(launch: AttemptLaunch, config: K8sConfig) -> dict[str, Any]:
    """The Job of one attempt: never restarted by Kubernetes (expbot decides), bounded by what runtime is left."""
    spec = launch.spec
    meta_labels = {
        **labels(launch.experiment_id, launch.experiment_name, launch.owner, spec.project),
        names.ATTEMPT: str(launch.attempt),
    }
    job_labels = dict(meta_labels)
    if config.queue_name:
        job_labels[names.KUEUE_QUEUE] = config.queue_name
    # A gang is an Indexed Job: one pod per node, each knowing its rank (the completion index); with
    # backoffLimit 0 any pod's failure fails the Job, which ends the rest of the gang.
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": spec.nodes,
        "parallelism": spec.nodes,
        "ttlSecondsAfterFinished": int(config.ttl_after_finished.total_seconds()),
        "template": {
            "metadata": {
                "labels": {**config.pod_labels, **meta_labels},
                **({"annotations": dict(config.pod_annotations)} if config.pod_annotations else {}),
            },
            "spec": _pod_spec(launch, config),
        },
    }
    if spec.nodes > 1:
        job_spec["completionMode"] = "Indexed"
    if config.queue_name:
        job_spec["suspend"] = True  # Kueue admits (unsuspends) it when the queue has quota
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.job_name(launch.experiment_id, launch.attempt),
            "namespace": config.namespace,
            "labels": job_labels,
        },
        "spec": job_spec,
    }


def service(launch: AttemptLaunch, config: K8sConfig, job_uid: str) -> dict[str, Any]:
    """A gang's headless Service: each pod gets a DNS name `<job>-<rank>.<service>`; owned by the Job (goes with it)."""
    name = names.job_name(launch.experiment_id, launch.attempt)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.service_name(launch.experiment_id, launch.attempt),
            "namespace": config.namespace,
            "labels": {**labels(launch.experiment_id, launch.experiment_name, launch.owner, launch.spec.project),
                       names.ATTEMPT: str(launch.attempt)},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job_uid}],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {names.EXPERIMENT: launch.experiment_id, names.ATTEMPT: str(launch.attempt)},
            # Ranks look rank 0 up while it is still starting: its name must resolve before it is ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": config.rendezvous_port, "protocol": "TCP"}],
        },
    }


def env(launch: AttemptLaunch, config: K8sConfig) -> list[dict[str, Any]]:
    """The env contract (core.attempt_env) with this cluster's places, and a gang's rendezvous variables."""
    places = AttemptPlaces(checkpoint_dir=config.checkpoint_mount, report_url=config.report_url,
                           report_secret=config.report_secret)
    values = attempt_env(launch, places)
    if launch.spec.nodes <= 1:
        return [{"name": key, "value": value} for key, value in values.items()]
    spec = launch.spec
    gang = rendezvous_env(spec.nodes, 0, spec.nproc_per_node, names.master_addr(launch.experiment_id, launch.attempt),
                          config.rendezvous_port)
    # One template for every pod: the rank comes from each pod's own completion index (downward API).
    rank = {"valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{names.COMPLETION_INDEX}']"}}}
    found: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items() if k not in RENDEZVOUS_NAMES]
    for key, value in gang.items():
        found.append({"name": key, **rank} if key in ("NODE_RANK", "PET_NODE_RANK") else {"name": key, "value": value})
    return found


def _pod_spec(launch: AttemptLaunch, config: K8sConfig) -> dict[str, Any]:
    spec = launch.spec
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "command": list(spec.command),
        "env": env(launch, config),
        "resources": _resources(launch, config),
        "volumeMounts": [{"name": "checkpoints", "mountPath": config.checkpoint_mount}],
        # A failed attempt's last log lines then arrive with its pod status (the watch event):
        # the evidence failure signatures look for, without a log call to a kubelet that may be gone.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    volumes: list[dict[str, Any]] = [
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": names.pvc_name(launch.experiment_id)}},
    ]
    if spec.gpus > 0:
        # PyTorch data loaders share tensors through /dev/shm; the runtime's default 64Mi is too small.
        container["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # The pod's deadline, not the Job's: a Job's counts from its creation, so an attempt waiting for
        # a node (unschedulable, a spot VM being provisioned) would spend the max runtime without
        # running; a pod's counts from when the kubelet took it (max runtime is running time).
        "activeDeadlineSeconds": max(1, math.ceil(launch.max_runtime.total_seconds())),
        "terminationGracePeriodSeconds": max(0, math.ceil(config.stop_grace.total_seconds())),
        "containers": [container],
        "volumes": volumes,
    }
    if spec.nodes > 1:
        pod["subdomain"] = names.service_name(launch.experiment_id, launch.attempt)  # hostname.subdomain resolves
    pool = config.pool(spec.gpu_type)
    if spec.gpus > 0 and pool.node_selector:
        pod["nodeSelector"] = dict(pool.node_selector)
    if launch.avoid_nodes:
        # A gang needs `nodes` nodes of its type at once: keeping it off a node for sure could leave
        # it unplaceable, so there other nodes are only preferred.
        pod["affinity"] = avoiding_nodes(pod.get("affinity"), launch.avoid_nodes, required=spec.nodes <= 1)
    tolerations = [*config.gpu_tolerations, *pool.tolerations] if spec.gpus > 0 else []
    if tolerations:
        pod["tolerations"] = [dict(t) for t in tolerations]
    if config.service_account:
        pod["serviceAccountName"] = config.service_account
    if config.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in config.image_pull_secrets]
    return pod


def avoiding_nodes(affinity: dict[str, Any] | None, nodes: tuple[str, ...], required: bool = True) -> dict[str, Any]:
    """`affinity` (not changed) plus a rule keeping the pod off `nodes` (required, or else preferred)."""
    merged = copy.deepcopy(affinity or {})
    # An entry may name several nodes ("a,b": where a gang ran).
    values = sorted({n.strip() for entry in nodes for n in entry.split(",") if n.strip()})
    exclusion = {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": list(values)}
    node_affinity = merged.setdefault("nodeAffinity", {})
    if not required:
        preferred = node_affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", [])
        preferred.append({"weight": 100, "preference": {"matchExpressions": [exclusion]}})
        return merged
    required_terms = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required_terms.get("nodeSelectorTerms") or [{}]
    # Required terms are ORed: an exclusion in only one of them would let the others place the pod there.
    for term in terms:
        term["matchExpressions"] = [*term.get("matchExpressions", ()), dict(exclusion, values=list(values))]
    required_terms["nodeSelectorTerms"] = terms
    return merged


def _resources(launch: AttemptLaunch, config: K8sConfig) -> dict[str, Any]:
    spec = launch.spec
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.gpus > 0:
        # Extended resources must have requests == limits.
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(spec.gpus)
    if spec.cpu:
        requests["cpu"] = spec.cpu
    if spec.memory:
        # Memory limit = request: the pod is never OOM-killed for using what it asked for.
        requests["memory"] = limits["memory"] = spec.memory
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources
