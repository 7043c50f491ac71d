"""A real Kubernetes control plane for tests, without Docker.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK run as local processes on
loopback ports; KWOK plays the kubelet for fake nodes, driven by Stage documents. The binaries come
from ``tests/cluster/build.sh`` (cached per version); its last stdout line is the bin dir.

    cp = ControlPlane(bin_dir, workdir)
    cp.start()                      # certificates, processes, readiness, 4 fake GPU nodes
    api = cp.api_client()           # kubernetes.client.ApiClient as a system:masters admin
    ...
    cp.stop()

Manual use: ``python -m tests.cluster.controlplane up --workdir DIR`` prints the kubeconfig path
and keeps the cluster up until SIGINT/SIGTERM.

Pod lifecycle on the fake nodes (KWOK stages; upstream documents from ``<bin>/../stages`` plus two
of ours, see ``EXPBOT_STAGES``). Every delay can be set per pod with an annotation
``<stage>.stage.kwok.x-k8s.io/delay`` (Go duration, e.g. "3s"); the defaults below replace
upstream's random jitter with fixed, short delays (``DEFAULT_STAGE_DELAYS_MS``):

  bound pod --pod-create--> Pending (podIP, ContainerCreating) --pod-ready--> Running, Ready
  Running Job pod --pod-complete--> Succeeded (exit 0)               [only pods owned by a Job]
  Running pod labelled pod-container-running-failed.stage.kwok.x-k8s.io=true
      --pod-container-running-failed--> Failed, container terminated with the annotated
        reason/exit-code (e.g. OOMKilled/137)
  deleted Pending/Running pod --pod-terminate (ours)--> Failed, containers terminated
      reason Error exit 143 (what a kubelet does after SIGTERM); Job controllers then drop the
      batch.kubernetes.io/job-tracking finalizer
  deleted terminal pod without finalizers --pod-delete (ours)--> gone

Fake GPU nodes (``create_gpu_nodes``): gpu-a100-{0,1} and gpu-h100-{0,1}, 8 nvidia.com/gpu each,
label expbot.dev/gpu-type, taints kwok.x-k8s.io/node=fake:NoSchedule and
nvidia.com/gpu=present:NoSchedule (pods need ``GPU_TOLERATIONS``).

Child processes get PR_SET_PDEATHSIG=SIGKILL (via ``setpriv``) so they die with the Python process
that started them: call ``start()``/``restart_apiserver()`` from a thread that outlives the cluster
(normally the main thread).
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TYPE_LABEL = "expbot.dev/gpu-type"
GPUS_PER_NODE = 8
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_VALUE = "fake"
GPU_NODES: dict[str, str] = {
    "gpu-a100-0": "a100",
    "gpu-a100-1": "a100",
    "gpu-h100-0": "h100",
    "gpu-h100-1": "h100",
}
GPU_TAINTS = [
    {"key": KWOK_NODE_ANNOTATION, "value": KWOK_NODE_VALUE, "effect": "NoSchedule"},
    {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"},
]
GPU_TOLERATIONS = [
    {"key": KWOK_NODE_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"},
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
]

STAGE_ANNOTATION_PREFIX = "stage.kwok.x-k8s.io"

# Upstream KWOK stage documents used, relative to the stages dir (a copy of kwok's kustomize/stage).
UPSTREAM_STAGES = {
    "node-initialize": "node/fast/node-initialize.yaml",
    "node-heartbeat": "node/heartbeat/node-heartbeat.yaml",
    "node-not-ready": "node/chaos/node-not-ready.yaml",
    "pod-create": "pod/general/pod-create.yaml",
    "pod-init-container-running": "pod/general/pod-init-container-running.yaml",
    "pod-init-container-completed": "pod/general/pod-init-container-completed.yaml",
    "pod-ready": "pod/general/pod-ready.yaml",
    "pod-complete": "pod/general/pod-complete.yaml",
    "pod-container-running-failed": "pod/chaos/pod-container-running-failed.yaml",
}

# (delay, max delay) defaults in ms per stage; None drops upstream's jitter so that an annotated
# `/delay` alone is exact. Annotations on the object still win.
DEFAULT_STAGE_DELAYS_MS: dict[str, tuple[int, int | None]] = {
    "node-heartbeat": (10_000, 15_000),
    "node-not-ready": (500, None),
    "pod-create": (100, None),
    "pod-init-container-running": (100, None),
    "pod-init-container-completed": (500, None),
    "pod-ready": (500, None),
    "pod-complete": (1_000, None),
    "pod-container-running-failed": (1_000, None),
    "pod-terminate": (500, None),
    "pod-delete": (200, None),
}


def _annotation(stage: str, key: str) -> str:
    return f'.metadata.annotations["{stage}.{STAGE_ANNOTATION_PREFIX}/{key}"]'


_POD_TERMINATE_TEMPLATE = """\
{{ $now := Now }}
{{ $annotations := or .metadata.annotations dict }}
{{ $exitCode := or ( index $annotations "pod-terminate.stage.kwok.x-k8s.io/exit-code" ) "143" }}
{{ $reason := or ( index $annotations "pod-terminate.stage.kwok.x-k8s.io/reason" ) "Error" }}
conditions:
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: PodCompleted
  type: Ready
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: PodCompleted
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{ $exitCode }}
      finishedAt: {{ $now | Quote }}
      reason: {{ $reason | Quote }}
      startedAt: {{ $now | Quote }}
{{ end }}
{{ if eq ( printf "%v" $exitCode ) "0" }}
phase: Succeeded
{{ else }}
phase: Failed
{{ end }}
"""

# Our stages: a kubelet moves a deleted pod to a terminal phase before it goes away (since 1.27),
# which is what lets the Job controller drop its job-tracking finalizer. Upstream's general
# pod-delete waits for finalizers to vanish (a deleted running Job pod would then hang forever),
# upstream's fast pod-delete ignores them (the pod hangs Terminating just the same).
EXPBOT_STAGES: list[dict[str, Any]] = [
    {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "pod-terminate"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".status.phase", "operator": "In", "values": ["Pending", "Running", "Unknown"]},
            ]},
            "weight": 1,
            "delay": {
                "durationMilliseconds": 500,
                "durationFrom": {"expressionFrom": _annotation("pod-terminate", "delay")},
                "jitterDurationFrom": {"expressionFrom": _annotation("pod-terminate", "jitter-delay")},
            },
            "next": {"statusTemplate": _POD_TERMINATE_TEMPLATE},
        },
    },
    {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "pod-delete"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".metadata.finalizers", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Succeeded", "Failed"]},
            ]},
            "weight": 1,
            "delay": {
                "durationMilliseconds": 200,
                "durationFrom": {"expressionFrom": _annotation("pod-delete", "delay")},
                "jitterDurationFrom": {"expressionFrom": _annotation("pod-delete", "jitter-delay")},
            },
            "next": {"delete": True},
        },
    },
]


def kwok_stages(stages_dir: Path, delays_ms: dict[str, tuple[int, int | None]] | None = None) -> list[dict[str, Any]]:
    """The Stage documents given to kwok: upstream ones read from stages_dir, then ours, with default delays applied."""
    delays = {**DEFAULT_STAGE_DELAYS_MS, **(delays_ms or {})}
    docs: list[dict[str, Any]] = []
    for name, rel in UPSTREAM_STAGES.items():
        path = stages_dir / rel
        if not path.is_file():
            raise FileNotFoundError(f"kwok stage {name!r} not found at {path}")
        (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if doc["metadata"]["name"] != name:
            raise ValueError(f"{path} defines stage {doc['metadata']['name']!r}, expected {name!r}")
        docs.append(doc)
    docs.extend(copy.deepcopy(EXPBOT_STAGES))
    for doc in docs:
        name = doc["metadata"]["name"]
        if name not in delays:
            continue
        delay, jitter = delays[name]
        spec_delay = doc["spec"].setdefault("delay", {})
        spec_delay["durationMilliseconds"] = delay
        if jitter is None:
            spec_delay.pop("jitterDurationMilliseconds", None)
        else:
            spec_delay["jitterDurationMilliseconds"] = jitter
    return docs


def gpu_node_manifest(name: str, gpu_type: str, gpus: int = GPUS_PER_NODE) -> dict[str, Any]:
    """A fake GPU Node managed by kwok (status is kept by kwok's node-initialize stage)."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_VALUE},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                GPU_TYPE_LABEL: gpu_type,
            },
        },
        "spec": {"taints": copy.deepcopy(GPU_TAINTS)},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def node_is_ready(node: Any) -> bool:
    """Whether a V1Node has condition Ready=True."""
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []) if node.status)


class ControlPlaneError(RuntimeError):
    """The control plane could not start (the message includes the tail of the process logs)."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so none is returned twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")


def make_certificates(pki: Path) -> None:
    """CA, apiserver serving cert, admin client cert (group system:masters), service-account key pair (openssl CLI)."""
    pki.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
          "-subj", "/CN=expbot-testbed-ca",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], pki)
    leaves = {
        "apiserver": ("/CN=kube-apiserver",
                      ("subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
                       "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
                       "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n")),
        "admin": ("/O=system:masters/CN=expbot-testbed-admin",
                  "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"),
    }
    for name, (subject, ext) in leaves.items():
        (pki / f"{name}.ext").write_text(ext)
        _run(["openssl", "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject], pki)
        _run(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
              "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt"], pki)
    _run(["openssl", "genrsa", "-out", "sa.key", "2048"], pki)
    _run(["openssl", "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path, context: str = "expbot-testbed") -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "admin", "user": {"client-certificate": str(pki / "admin.crt"),
                                             "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "admin"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@dataclass
class _Process:
    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.starts + 1} at {time.strftime('%H:%M:%S')}: {' '.join(self.args)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                prefix + self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **self.env},
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(10)
        # Whatever else is left in its process group (there should be nothing).
        self.signal_group(signal.SIGKILL)
        self.popen = None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback.

    Files under workdir: pki/ (certificates), kubeconfig, kwok-stages.yaml, etcd/ (data), logs/<name>.log.
    """

    COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

    def __init__(self, bin_dir: Path, workdir: Path, *, stage_delays_ms: dict[str, tuple[int, int | None]] | None = None,
                 stages_dir: Path | None = None) -> None:
        self.bin_dir = Path(bin_dir).resolve()
        self.workdir = Path(workdir).resolve()
        self.stages_dir = Path(stages_dir) if stages_dir else self.bin_dir.parent / "stages"
        self.stage_delays_ms = stage_delays_ms
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self._kubeconfig = self.workdir / "kubeconfig"
        self.ports: dict[str, int] = {}
        self.processes: dict[str, _Process] = {}
        self.startup_seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._atexit_registered = False

    # ----- public API -------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient authenticated as the admin (system:masters)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self._kubeconfig))

    def start(self, *, gpu_nodes: bool = True, timeout: float = 120.0) -> None:
        """Start every component, wait until ready, then (by default) create the GPU nodes. Raises ControlPlaneError."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        missing = [b for b in self.COMPONENTS if not (self.bin_dir / b).is_file()]
        if missing:
            raise ControlPlaneError(f"missing binaries in {self.bin_dir}: {', '.join(missing)} (run tests/cluster/build.sh)")
        if not shutil.which("openssl"):
            raise ControlPlaneError("the openssl CLI is needed to make certificates")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            make_certificates(self.pki)
            names = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")
            self.ports = dict(zip(names, free_ports(len(names)), strict=True))
            write_kubeconfig(self._kubeconfig, self.server, self.pki)
            stages_path = self.workdir / "kwok-stages.yaml"
            stages_path.write_text(yaml.safe_dump_all(kwok_stages(self.stages_dir, self.stage_delays_ms), sort_keys=False))
            self._define_processes(stages_path)
            self._mark(t0, "certificates")

            self.processes["etcd"].start()
            self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self.ports['etcd']}/health"), deadline, "etcd", "etcd /health")
            self._mark(t0, "etcd")
            self.processes["kube-apiserver"].start()
            self._wait_apiserver(deadline)
            self._mark(t0, "kube-apiserver")
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self.processes[name].start()
            self._wait(lambda: self._http_ok(f"https://127.0.0.1:{self.ports['controller-manager']}/healthz", verify=False),
                       deadline, "kube-controller-manager", "kube-controller-manager /healthz")
            self._wait(lambda: self._http_ok(f"https://127.0.0.1:{self.ports['scheduler']}/healthz", verify=False),
                       deadline, "kube-scheduler", "kube-scheduler /healthz")
            self._wait_default_service_account("default", deadline)
            self._mark(t0, "controllers")
            if gpu_nodes:
                self.create_gpu_nodes(timeout=max(5.0, deadline - time.monotonic()))
                self._mark(t0, "gpu-nodes")
        except BaseException as exc:
            message = f"control plane failed to start: {exc}\n{self.log_tail()}"
            self.stop()
            if isinstance(exc, Exception):
                raise ControlPlaneError(message) from exc
            raise

    def create_gpu_nodes(self, timeout: float = 60.0) -> list[str]:
        """Create the GPU nodes (idempotent) and wait until kwok reports them all Ready."""
        from kubernetes import client

        api = self.api_client()
        try:
            core = client.CoreV1Api(api)
            existing = {n.metadata.name for n in core.list_node().items}
            for name, gpu_type in GPU_NODES.items():
                if name not in existing:
                    core.create_node(gpu_node_manifest(name, gpu_type))
            deadline = time.monotonic() + timeout
            self._wait(lambda: all(node_is_ready(core.read_node(n)) for n in GPU_NODES), deadline, "kwok",
                       f"nodes {', '.join(GPU_NODES)} Ready")
        finally:
            api.close()
        return list(GPU_NODES)

    def restart_apiserver(self, *, graceful: bool = True, downtime: float = 0.0, timeout: float = 60.0) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL when not graceful), optionally stay down, start it on the same port, wait /readyz."""
        with self._lock:
            proc = self.processes["kube-apiserver"]
            proc.stop(sig=signal.SIGTERM if graceful else signal.SIGKILL)
            if downtime:
                time.sleep(downtime)
            proc.start()
            self._wait_apiserver(time.monotonic() + timeout)

    def stop(self) -> None:
        """Stop every process (process groups; SIGTERM, then SIGKILL) in reverse start order. Idempotent."""
        with self._lock:
            for name in reversed(self.COMPONENTS):
                proc = self.processes.get(name)
                if proc is not None:
                    proc.stop(timeout=10.0)
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def log_tail(self, lines: int = 25, components: Iterable[str] | None = None) -> str:
        """The last lines of each component's log, for failure messages."""
        parts = []
        for name in components or self.COMPONENTS:
            proc = self.processes.get(name)
            if proc is None or proc.starts == 0:
                continue
            state = "running" if proc.alive() else f"exited {proc.popen.returncode}" if proc.popen else "stopped"
            parts.append(f"---- {name} ({state}) {proc.log_path}\n{proc.tail(lines)}")
        return "\n".join(parts)

    def alive(self) -> dict[str, bool]:
        return {name: proc.alive() for name, proc in self.processes.items()}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- internals --------------------------------------------------------------------------

    def _define_processes(self, stages_path: Path) -> None:
        b, pki, kubeconfig, p = self.bin_dir, self.pki, str(self._kubeconfig), self.ports
        etcd_url, peer_url = f"http://127.0.0.1:{p['etcd']}", f"http://127.0.0.1:{p['etcd-peer']}"
        specs = {
            "etcd": [
                str(b / "etcd"), "--name=testbed", f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=testbed={peer_url}", "--initial-cluster-state=new",
                "--quota-backend-bytes=1073741824", "--unsafe-no-fsync", "--snapshot-count=5000",
                "--log-level=warn",
            ],
            "kube-apiserver": [
                str(b / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={p['apiserver']}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC", "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
                "--profiling=false", "--shutdown-watch-termination-grace-period=2s",
            ],
            "kube-controller-manager": [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={p['controller-manager']}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                f"--root-ca-file={pki / 'ca.crt'}", f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=false", "--controllers=*",
                "--concurrent-job-syncs=10", "--concurrent-gc-syncs=10", "--profiling=false",
            ],
            "kube-scheduler": [
                str(b / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={p['scheduler']}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}", "--profiling=false",
            ],
            "kwok": [
                str(b / "kwok"), f"--kubeconfig={kubeconfig}", f"--config={stages_path}",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_VALUE}",
                "--cidr=10.244.0.0/16", "--node-ip=127.0.0.1",
            ],
        }
        env = {"HOME": str(self.workdir)}  # kwok reads ~/.kwok/kwok.yaml when present: keep the user's out
        self.processes = {name: _Process(name, args, self.logs / f"{name}.log", env=env) for name, args in specs.items()}

    def _mark(self, t0: float, what: str) -> None:
        self.startup_seconds[what] = round(time.monotonic() - t0, 2)

    def _wait(self, predicate: Callable[[], Any], deadline: float, component: str, what: str, interval: float = 0.1) -> None:
        while True:
            try:
                if predicate():
                    return
            except Exception:  # noqa: BLE001, S110 - not ready yet (connection refused, 5xx, 404...)
                pass
            proc = self.processes.get(component)
            if proc is not None and proc.popen is not None and not proc.alive():
                raise ControlPlaneError(f"{component} exited with {proc.popen.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {what}")
            time.sleep(interval)

    def _ssl_context(self, verify: bool = True) -> ssl.SSLContext:
        if verify:
            ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _http_ok(self, url: str, verify: bool = True) -> bool:
        ctx = self._ssl_context(verify) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _wait_apiserver(self, deadline: float) -> None:
        self._wait(lambda: self._http_ok(f"{self.server}/readyz"), deadline, "kube-apiserver", "kube-apiserver /readyz", 0.2)

    def _wait_default_service_account(self, namespace: str, deadline: float) -> None:
        url = f"{self.server}/api/v1/namespaces/{namespace}/serviceaccounts/default"
        self._wait(lambda: self._http_ok(url), deadline, "kube-controller-manager", f"ServiceAccount {namespace}/default")


def default_bin_dir(repo_root: Path | None = None) -> Path:
    """Run tests/cluster/build.sh (a no-op when the cached binaries exist) and return its bin dir."""
    env_bin = os.environ.get("EXPBOT_TESTBED_BIN")
    if env_bin:
        return Path(env_bin)
    script = (repo_root or Path(__file__).resolve().parents[2]) / "tests" / "cluster" / "build.sh"
    timeout = float(os.environ.get("EXPBOT_TESTBED_BUILD_TIMEOUT", "3600"))
    # Its own process group, so that an interrupted build (Ctrl-C, pytest-timeout) leaves no `go build` behind.
    proc = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        tail = "\n".join(stderr.splitlines()[-20:])
        raise ControlPlaneError(f"{script} failed ({proc.returncode}):\n{tail}")
    lines = stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{script} printed no bin dir")
    return Path(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.controlplane")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster, print the kubeconfig path, run until SIGINT/SIGTERM")
    up.add_argument("--workdir", type=Path, required=True)
    up.add_argument("--bin-dir", type=Path, default=None, help="default: the output of tests/cluster/build.sh")
    up.add_argument("--no-gpu-nodes", action="store_true")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cp = ControlPlane(args.bin_dir or default_bin_dir(), args.workdir)
    t0 = time.monotonic()
    try:
        cp.start(gpu_nodes=not args.no_gpu_nodes)
    except ControlPlaneError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"ready in {time.monotonic() - t0:.1f}s {cp.startup_seconds}", file=sys.stderr)
    print(f"export KUBECONFIG={cp.kubeconfig}", file=sys.stderr)
    print(cp.kubeconfig, flush=True)
    try:
        while not stop.wait(1.0):
            dead = [n for n, ok in cp.alive().items() if not ok]
            if dead:
                print(f"components exited: {', '.join(dead)}\n{cp.log_tail(components=dead)}", file=sys.stderr)
                return 1
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
