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

The pieces: ``pki`` (certificates, kubeconfig), ``processes`` (ports, supervised child processes),
``kwok_stages`` (the pod and node lifecycle on fake nodes, and its delays), ``nodes`` (the fake GPU
nodes), ``binaries`` (build.sh's bin dir). Their public names are importable from here too.

Child processes get PR_SET_PDEATHSIG=SIGKILL (via ``setpriv``) so they die with the Python process
that started them: call ``start()``/``restart_apiserver()`` from a thread that outlives the cluster
(normally the main thread).
"""
from __future__ import annotations

import argparse
import atexit
import shutil
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

import yaml

from tests.cluster.binaries import default_bin_dir
from tests.cluster.kwok_stages import (
    DEFAULT_STAGE_DELAYS_MS,
    EXPBOT_STAGES,
    STAGE_ANNOTATION_PREFIX,
    UPSTREAM_STAGES,
    kwok_stages,
)
from tests.cluster.nodes import (
    GPU_NODES,
    GPU_RESOURCE,
    GPU_TAINTS,
    GPU_TOLERATIONS,
    GPU_TYPE_LABEL,
    GPUS_PER_NODE,
    KWOK_NODE_ANNOTATION,
    KWOK_NODE_VALUE,
    gpu_node_manifest,
    node_is_ready,
)
from tests.cluster.pki import make_certificates, write_kubeconfig
from tests.cluster.processes import ControlPlaneError, Process, free_ports
from tests.cluster.scheduler_config import scheduler_args

__all__ = [
    "DEFAULT_STAGE_DELAYS_MS", "EXPBOT_STAGES", "GPUS_PER_NODE", "GPU_NODES", "GPU_RESOURCE", "GPU_TAINTS",
    "GPU_TOLERATIONS", "GPU_TYPE_LABEL", "KWOK_NODE_ANNOTATION", "KWOK_NODE_VALUE", "STAGE_ANNOTATION_PREFIX",
    "UPSTREAM_STAGES", "ControlPlane", "ControlPlaneError", "default_bin_dir", "free_ports", "gpu_node_manifest",
    "kwok_stages", "main", "make_certificates", "node_is_ready", "write_kubeconfig",
]


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback.

    Files under workdir: pki/ (certificates), kubeconfig, kwok-stages.yaml, etcd/ (data), logs/<name>.log.

    stage_delays_ms: per-stage (delay, max delay) over ``DEFAULT_STAGE_DELAYS_MS``; stages_dir: the
    upstream Stage documents (default ``<bin_dir>/../stages``).
    kube_api_qps, kube_api_burst: the API client rate limit of kube-controller-manager and of
    kube-scheduler (``--kube-api-qps``/``--kube-api-burst``; burst defaults to twice the QPS). Unset,
    they keep theirs: 20 QPS (burst 30) for the controller-manager, shared by every controller, so
    that the PV controller's 3 writes per claim binding cap the cluster at ~7 new pods a second; 50
    (burst 100) for the scheduler.
    scheduler_profile: a kube-scheduler profile (tests/cluster/scheduler_config.py, e.g. ``binpack_profile()``)
    run through ``--config``; unset, the scheduler keeps its default scoring (LeastAllocated, random ties).
    """

    COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
    API_CLIENT_COMPONENTS = ("kube-controller-manager", "kube-scheduler")  # what kube_api_qps/_burst apply to

    def __init__(self, bin_dir: Path, workdir: Path, *, stage_delays_ms: dict[str, tuple[int, int | None]] | None = None,
                 stages_dir: Path | None = None, kube_api_qps: float | None = None,
                 kube_api_burst: int | None = None, scheduler_profile: dict[str, Any] | None = None) -> None:
        if kube_api_qps is not None and kube_api_qps <= 0:
            raise ValueError(f"kube_api_qps must be positive, not {kube_api_qps}")
        if kube_api_burst is not None and kube_api_burst <= 0:
            raise ValueError(f"kube_api_burst must be positive, not {kube_api_burst}")
        self.bin_dir = Path(bin_dir).resolve()
        self.workdir = Path(workdir).resolve()
        self.stages_dir = Path(stages_dir) if stages_dir else self.bin_dir.parent / "stages"
        self.stage_delays_ms = stage_delays_ms
        self.kube_api_qps = kube_api_qps
        if kube_api_burst is None and kube_api_qps is not None:
            kube_api_burst = max(1, round(2 * kube_api_qps))
        self.kube_api_burst = kube_api_burst
        self.scheduler_profile = scheduler_profile
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self._kubeconfig = self.workdir / "kubeconfig"
        self.ports: dict[str, int] = {}
        self.processes: dict[str, Process] = {}
        self.startup_seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._atexit_registered = False

    # ----- public API -------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (written by start())."""
        return self._kubeconfig

    @property
    def server(self) -> str:
        """kube-apiserver's URL (after start())."""
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
        """Whether each component is running, by name."""
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
        for name in self.API_CLIENT_COMPONENTS:
            if self.kube_api_qps is not None:
                specs[name].append(f"--kube-api-qps={self.kube_api_qps}")
            if self.kube_api_burst is not None:
                specs[name].append(f"--kube-api-burst={self.kube_api_burst}")
        env = {"HOME": str(self.workdir)}  # kwok reads ~/.kwok/kwok.yaml when present: keep the user's out
        self.processes = {name: Process(name, args, self.logs / f"{name}.log", env=env) for name, args in specs.items()}
        if self.scheduler_profile is not None:
            self._configure_scheduler()

    def _configure_scheduler(self) -> None:
        proc = self.processes["kube-scheduler"]
        proc.args = scheduler_args(proc.args, self.workdir / "kube-scheduler.yaml", self.scheduler_profile or {},
                                   str(self._kubeconfig), self.kube_api_qps, self.kube_api_burst)

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


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.cluster.controlplane up``: start a cluster and keep it up until SIGINT/SIGTERM."""
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
