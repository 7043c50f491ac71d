"""Real Kueue on the test control plane: its controller (tests/cluster/build_kueue.sh) as a local process.

    kueue = Kueue(kueue_dir(), kubeconfig, workdir).start()   # CRDs installed, controller ready
    kueue.gpu_queues(api, {"a100": 16})                        # a ResourceFlavor per GPU type, a ClusterQueue
    kueue.local_queue(api, namespace)                          # the LocalQueue expbot's queue_name names
    kueue.stop()

Its webhooks are not registered with the API server (they would have to be reached at an in-cluster
Service): Kueue's Job webhook only suspends a labelled Job at creation, and expbot creates its Jobs
suspended already. Its internal certificate management is off; the webhook and metrics servers get a
self-signed certificate made here (the metrics server's directory through KUEUE_METRICS_CERT_DIR, the
one line build_kueue.sh changes).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.nodes import GPU_RESOURCE, GPU_TYPE_LABEL
from tests.cluster.processes import ControlPlaneError, Process, free_ports, run_checked

GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
NAMESPACE = "kueue-system"
CLUSTER_QUEUE = "expbot-gpus"
LOCAL_QUEUE = "gpus"
HIGH_PRIORITY = "expbot-test-urgent"  # a PriorityClass that preempts expbot's Jobs in the ClusterQueue


def kueue_dir(repo_root: Path | None = None) -> Path:
    """Run tests/cluster/build_kueue.sh (a no-op when cached) and return the directory with bin/ and crds/."""
    env_dir = os.environ.get("EXPBOT_KUEUE_DIR")
    if env_dir:
        return Path(env_dir)
    script = (repo_root or Path(__file__).resolve().parents[2]) / "tests" / "cluster" / "build_kueue.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                          timeout=float(os.environ.get("EXPBOT_TESTBED_BUILD_TIMEOUT", "3600")))
    if done.returncode != 0:
        raise ControlPlaneError(f"{script} failed ({done.returncode}):\n" + "\n".join(done.stderr.splitlines()[-20:]))
    return Path(done.stdout.strip().splitlines()[-1])


class Kueue:
    """Kueue's controller against one API server, with its CRDs installed."""

    def __init__(self, directory: Path, kubeconfig: Path, workdir: Path) -> None:
        self.directory, self.kubeconfig, self.workdir = Path(directory), Path(kubeconfig), Path(workdir)
        self.process: Process | None = None
        self.health_port = 0

    def start(self, api: Any, timeout: float = 90.0) -> "Kueue":
        """Install the CRDs, start the controller and wait until it is ready. Raises ControlPlaneError."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._install_crds(api, timeout)
        with contextlib.suppress(ApiException):
            client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        certs = self._certificates()
        self.health_port, webhook_port = free_ports(2)
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration", "namespace": NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": ["batch/job"]},
            # Its visibility API server wants a certificate at /visibility and an APIService: not needed.
            "featureGates": {"VisibilityOnDemand": False},
        }
        path = self.workdir / "kueue-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = Process("kueue", [str(self.directory / "bin" / "kueue"), f"--config={path}"],
                               self.workdir / "kueue.log",
                               env={"KUBECONFIG": str(self.kubeconfig), "KUEUE_METRICS_CERT_DIR": str(certs)})
        self.process.start()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.process.alive():
                raise ControlPlaneError(f"kueue exited:\n{self.process.tail()}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"kueue not ready within {timeout:g}s:\n{self.process.tail()}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        """Stop the controller (its CRDs and objects stay)."""
        if self.process is not None:
            self.process.stop(timeout=10.0)

    def gpu_queues(self, api: Any, quota: dict[str, int], cluster_queue: str = CLUSTER_QUEUE) -> None:
        """A ResourceFlavor per GPU type (its nodes by label), a ClusterQueue with this GPU quota that
        preempts lower priority within itself, and the PriorityClass that does so."""
        custom = client.CustomObjectsApi(api)
        for gpu_type in quota:
            _apply(lambda body: custom.create_cluster_custom_object(GROUP, VERSION, "resourceflavors", body), {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor", "metadata": {"name": gpu_type},
                "spec": {"nodeLabels": {GPU_TYPE_LABEL: gpu_type}}})
        _apply(lambda body: custom.create_cluster_custom_object(GROUP, VERSION, "clusterqueues", body), {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue", "metadata": {"name": cluster_queue},
            "spec": {
                "namespaceSelector": {},
                "preemption": {"withinClusterQueue": "LowerPriority"},
                "resourceGroups": [{"coveredResources": [GPU_RESOURCE], "flavors": [
                    {"name": gpu_type, "resources": [{"name": GPU_RESOURCE, "nominalQuota": gpus}]}
                    for gpu_type, gpus in quota.items()]}],
            }})
        _apply(lambda body: client.SchedulingV1Api(api).create_priority_class(body), {
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": HIGH_PRIORITY},
            "value": 100000, "description": "a test Job that preempts expbot's in Kueue's ClusterQueue"})

    def local_queue(self, api: Any, namespace: str, name: str = LOCAL_QUEUE, cluster_queue: str = CLUSTER_QUEUE) -> str:
        """A LocalQueue in `namespace` feeding the ClusterQueue; its name."""
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "localqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue}})
        return name

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _install_crds(self, api: Any, timeout: float) -> None:
        ext = client.ApiextensionsV1Api(api)
        names = []
        for path in sorted((self.directory / "crds").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    _apply(ext.create_custom_resource_definition, doc)
                    names.append(doc["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while not any(c.type == "Established" and c.status == "True"
                          for c in ext.read_custom_resource_definition(name).status.conditions or ()):
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"CRD {name} not established within {timeout:g}s")
                time.sleep(0.1)

    def _certificates(self) -> Path:
        """A self-signed serving certificate for 127.0.0.1 (tls.crt, tls.key), for the webhook and metrics servers."""
        certs = self.workdir / "kueue-certs"
        certs.mkdir(exist_ok=True)
        if not (certs / "tls.crt").exists():
            run_checked(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                         "-nodes", "-keyout", "tls.key", "-out", "tls.crt", "-days", "365", "-subj", "/CN=kueue",
                         "-addext", "subjectAltName=IP:127.0.0.1"], certs)
        return certs


def _apply(create: Any, body: dict[str, Any]) -> None:
    """Create, or leave the existing object (the session's cluster may have it from an earlier test)."""
    try:
        create(body)
    except ApiException as e:
        if e.status != 409:
            raise
