"""Helpers for tests against the KWOK test control plane (tests/cluster/controlplane.py)."""
from __future__ import annotations

import contextlib
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.cluster.controlplane import (
    GPU_NODES,
    GPU_RESOURCE,
    GPU_TOLERATIONS,
    GPU_TYPE_LABEL,
    gpu_node_manifest,
    node_is_ready,
)
from tests.polling import wait_for

__all__ = [
    "GPU_NODES", "GPU_RESOURCE", "GPU_TOLERATIONS", "GPU_TYPE_LABEL", "ExternalCluster", "PodWatcher",
    "condition", "delete_node", "evict_pod", "fresh_namespace", "gpu_job", "gpu_pod", "job_pods", "lifecycle", "recreate_node",
    "wait_for", "wait_for_pod", "wait_gone",
]

STAGE = "stage.kwok.x-k8s.io"


@contextlib.contextmanager
def fresh_namespace(api: Any, prefix: str = "t", timeout: float = 30.0) -> Iterator[str]:
    """A new namespace `<prefix>-<random>` whose `default` ServiceAccount exists; deleted afterwards (not waited for)."""
    core = client.CoreV1Api(api)
    name = f"{prefix}-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def has_default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_for(has_default_sa, timeout=timeout, what=f"ServiceAccount {name}/default", interval=0.05)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
FAIL_STAGE = "pod-container-running-failed"


def lifecycle(
    *,
    ready: str | None = "500ms",
    complete: str | None = "1s",
    fail: str | None = None,
    fail_reason: str = "OOMKilled",
    fail_exit_code: int = 137,
    fail_message: str | None = None,
    terminate: str | None = None,
    terminate_exit_code: int | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) steering kwok's stages for a pod (template). Durations are Go durations.

    ready: Pending -> Running after this. complete: Running -> Succeeded after this (Job pods only;
    "24h" keeps it running). fail: Running -> Failed after this, container terminated with
    fail_reason/fail_exit_code (wins over complete). terminate: a deleted pod reaches its terminal
    phase after this (the "process exits after SIGTERM" time), with terminate_exit_code (143 by default).
    """
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}

    def delay(stage: str, value: str | None) -> None:
        if value is not None:
            annotations[f"{stage}.{STAGE}/delay"] = value
            annotations[f"{stage}.{STAGE}/jitter-delay"] = value

    delay("pod-ready", ready)
    delay("pod-complete", complete)
    delay("pod-terminate", terminate)
    if terminate_exit_code is not None:
        annotations[f"pod-terminate.{STAGE}/exit-code"] = str(terminate_exit_code)
    if fail is not None:
        labels[f"{FAIL_STAGE}.{STAGE}"] = "true"
        delay(FAIL_STAGE, fail)
        annotations[f"{FAIL_STAGE}.{STAGE}/reason"] = fail_reason
        annotations[f"{FAIL_STAGE}.{STAGE}/exit-code"] = str(fail_exit_code)
        if fail_message is not None:
            annotations[f"{FAIL_STAGE}.{STAGE}/message"] = fail_message
        annotations[f"pod-complete.{STAGE}/weight"] = "0"
    return labels, annotations


def _pod_spec(gpus: int, gpu_type: str | None, restart_policy: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "tolerations": [dict(t) for t in GPU_TOLERATIONS],
        "terminationGracePeriodSeconds": 30,
        "containers": [{
            "name": "main",
            "image": "registry.example/expbot/train:latest",
            "command": ["python", "train.py"],
            "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
        }],
    }
    if gpu_type is not None:
        spec["nodeSelector"] = {GPU_TYPE_LABEL: gpu_type}
    return spec


def gpu_pod(name: str, gpus: int, gpu_type: str | None = None, *, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A bare Pod asking for GPUs, with the GPU tolerations."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})},
        "spec": _pod_spec(gpus, gpu_type, "Never"),
    }


def gpu_job(name: str, gpus: int, gpu_type: str | None = None, *, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, backoff_limit: int = 0) -> dict[str, Any]:
    """A Job with one pod asking for GPUs; labels/annotations go on the pod template (see lifecycle())."""
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": dict(labels or {}), "annotations": dict(annotations or {})},
                "spec": _pod_spec(gpus, gpu_type, "Never"),
            },
        },
    }


def condition(obj: Any, type_: str) -> Any | None:
    """The status condition of that type on a typed object (Pod, Job, Node), or None."""
    for c in (obj.status.conditions or []) if obj.status else []:
        if c.type == type_:
            return c
    return None


def job_pods(core: client.CoreV1Api, namespace: str, job_name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}").items


def read_pod(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_for_pod(core: client.CoreV1Api, namespace: str, name: str, predicate: Callable[[client.V1Pod], Any],
                 timeout: float = 20.0, what: str = "") -> client.V1Pod:
    """Poll the pod until predicate(pod) is truthy; return the pod."""
    found: list[client.V1Pod] = []

    def check() -> bool:
        pod = read_pod(core, namespace, name)
        if pod is not None and predicate(pod):
            found.append(pod)
            return True
        return False

    wait_for(check, timeout=timeout, what=what or f"pod {namespace}/{name}", interval=0.1)
    return found[-1]


def wait_gone(read: Callable[[], Any], timeout: float = 20.0, what: str = "an object to be deleted") -> None:
    """Poll read() until it raises a 404 ApiException."""
    def gone() -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(gone, timeout=timeout, what=what, interval=0.1)


def evict_pod(core: client.CoreV1Api, namespace: str, name: str, grace_period_seconds: int | None = None) -> None:
    """Evict through the Eviction API (policy/v1), as `kubectl drain` or a node-pressure eviction would."""
    body = client.V1Eviction(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
        delete_options=client.V1DeleteOptions(grace_period_seconds=grace_period_seconds)
        if grace_period_seconds is not None else None,
    )
    core.create_namespaced_pod_eviction(name, namespace, body)


def delete_node(core: client.CoreV1Api, name: str, wait: bool = True, timeout: float = 20.0) -> None:
    """Delete a Node. Its pods stay (kwok stops driving them) until podgc removes them (~40-60s later)."""
    core.delete_node(name)
    if wait:
        wait_gone(lambda: core.read_node(name), timeout, f"node {name} to be deleted")


def recreate_node(core: client.CoreV1Api, name: str, gpu_type: str | None = None, timeout: float = 30.0) -> None:
    """Create a fake GPU node again (the same manifest as at start-up) and wait until Ready."""
    gpu_type = gpu_type or GPU_NODES[name]
    try:
        core.create_node(gpu_node_manifest(name, gpu_type))
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(lambda: node_is_ready(core.read_node(name)), timeout=timeout, what=f"node {name} Ready", interval=0.1)


@dataclass
class PodEvent:
    type: str  # ADDED / MODIFIED / DELETED
    pod: client.V1Pod
    at: float = field(default_factory=time.monotonic)


class PodWatcher:
    """Records every version of the pods in a namespace through a watch, so short-lived states are not missed.

        with PodWatcher(core, ns) as w:
            ...
            w.wait(lambda e: e.type == "DELETED", timeout=10)
        w.events  # everything seen
    """

    def __init__(self, core: client.CoreV1Api, namespace: str, label_selector: str | None = None) -> None:
        self.core, self.namespace, self.label_selector = core, namespace, label_selector
        self.events: list[PodEvent] = []
        self._queue: queue.Queue[PodEvent] = queue.Queue()
        self._watch = watch.Watch()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.label_selector)
        self._rv = pods.metadata.resource_version
        for pod in pods.items:
            self._record(PodEvent("ADDED", pod))
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"pod-watch-{self.namespace}")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _record(self, event: PodEvent) -> None:
        self.events.append(event)
        self._queue.put(event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for ev in self._watch.stream(self.core.list_namespaced_pod, self.namespace,
                                             label_selector=self.label_selector, resource_version=self._rv,
                                             timeout_seconds=60, _request_timeout=70):
                    pod = ev["object"]
                    self._rv = pod.metadata.resource_version
                    self._record(PodEvent(ev["type"], pod))
                    if self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - reconnect (e.g. the apiserver restarted)
                if self._stop.wait(0.2):
                    return

    def wait(self, predicate: Callable[[PodEvent], Any], timeout: float = 20.0, what: str = "a pod event") -> PodEvent:
        """The first recorded event (past or future) for which predicate(event) is truthy."""
        for event in list(self.events):
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; saw {self.summary()}")
            try:
                event = self._queue.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if predicate(event):
                return event

    def summary(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.pod
            conds = ",".join(f"{c.type}={c.status}" for c in (p.status.conditions or [])) if p.status else ""
            out.append(f"{e.type} {p.metadata.name} {p.status.phase if p.status else None} "
                       f"del={bool(p.metadata.deletion_timestamp)} fin={p.metadata.finalizers} [{conds}]")
        return out


class ExternalCluster:
    """An existing cluster named by EXPBOT_TEST_KUBECONFIG (nodes assumed created); the ControlPlane subset tests use."""

    def __init__(self, kubeconfig: Path) -> None:
        self._kubeconfig = Path(kubeconfig)

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self._kubeconfig))

    def restart_apiserver(self, **_: Any) -> None:
        raise NotImplementedError("cannot restart the apiserver of an external cluster")

    def log_tail(self, lines: int = 25) -> str:
        return ""

    def stop(self) -> None:
        pass

