"""/metrics of two real `expbot serve` replicas on the Kubernetes backend: the leader says so, its
watches are counted, the store's figures are the same on both, and both are live and ready."""
from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from adapters.k8s import names
from tests.cluster.provisioner import FakeProvisioner
from tests.integration.cli_harness import EXPBOT, REPO, Expbot
from tests.k8s.cluster_helpers import lifecycle
from tests.k8s.harness import write_config
from tests.polling import wait_for

LEASE = "expbot-leader"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metrics(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _replica(installation: Expbot, name: str, port: int) -> subprocess.Popen:
    """A real `expbot serve` as replica `name`, its HTTP on `port`; log in the data dir."""
    return subprocess.Popen([*EXPBOT, "serve"], cwd=REPO, stdout=open(installation.data_dir / f"serve-{name}.log", "w"),
                            stderr=subprocess.STDOUT,
                            env=installation.env | {"EXPBOT_POD_NAME": name, "EXPBOT_HTTP_PORT": str(port)})


def test_leader_relists_and_store_figures_on_every_replica(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    labels, annotations = lifecycle(ready="200ms", complete="1h")
    config = write_config(tmp_path / "expbot.toml", pod_labels=labels, pod_annotations=annotations)
    installation = Expbot(
        tmp_path / "data", EXPBOT_BACKEND="kubernetes", EXPBOT_K8S_KUBECONFIG=str(k8s_cluster.kubeconfig),
        EXPBOT_K8S_NAMESPACE=k8s_namespace, EXPBOT_CONFIG_FILE=str(config), EXPBOT_LEADER_ELECTION="true",
        EXPBOT_LEASE_DURATION_SECONDS="3", EXPBOT_LEASE_RENEW_DEADLINE_SECONDS="2", EXPBOT_LEASE_RETRY_SECONDS="0.5",
        EXPBOT_K8S_RESYNC_SECONDS="1", EXPBOT_HTTP_HOST="127.0.0.1",
    )
    installation.data_dir.mkdir(parents=True)
    installation.cli("db", "upgrade")
    leases = client.CoordinationV1Api(k8s_api)
    batch = client.BatchV1Api(k8s_api)
    provisioner = FakeProvisioner(k8s_api, k8s_namespace).start()
    ports = {name: _free_port() for name in ("replica-a", "replica-b")}
    replicas = {name: _replica(installation, name, port) for name, port in ports.items()}
    try:
        def holder() -> str:
            try:
                return leases.read_namespaced_lease(LEASE, k8s_namespace).spec.holder_identity or ""
            except client.ApiException:
                return ""

        leader = wait_for(holder, timeout=120, what="a replica to take the Lease")  # two imports of the client: slow when busy
        follower = next(name for name in replicas if name != leader)
        wait_for(lambda: _metrics(ports[leader]).get(("expbot_leader", ())) == 1, timeout=60, what="the leader's gauge")
        installation.cli("launch", "first", "--gpus", "1", "--gpu-type", "a100", "--", "python", "train.py")
        jobs = lambda: batch.list_namespaced_job(k8s_namespace, label_selector=names.MANAGED_SELECTOR).items  # noqa: E731
        wait_for(lambda: len(jobs()) == 1, timeout=60, what="the leader to create the Job")
        running = ("expbot_experiments", (("project", "default"), ("state", "RUNNING")))
        wait_for(lambda: all(_metrics(p).get(running) == 1 for p in ports.values()), timeout=60,
                 what="both replicas to report the running experiment")

        on_leader, on_follower = _metrics(ports[leader]), _metrics(ports[follower])
        assert on_leader[("expbot_leadership_changes_total", ())] == 1
        assert on_follower[("expbot_leader", ())] == 0 and on_follower[("expbot_leadership_changes_total", ())] == 0
        # The leader's watches are counted (none had to relist yet); a follower watches nothing.
        relists = {dict(labels)["resource"] for name, labels in on_leader if name == "expbot_watch_relists_total"}
        assert {"jobs", "pods"} <= relists
        assert not any(name == "expbot_watch_relists_total" for name, _ in on_follower)
        # Store figures are the same on every replica (dashboards take max, not sum).
        store = [key for key in on_leader if key[0] in ("expbot_attempts_started_total", "expbot_experiments")]
        assert store and all(on_leader[key] == on_follower[key] for key in store)
        for port in ports.values():
            for probe in ("/healthz", "/readyz"):
                assert httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=10).status_code == 200
    finally:
        for proc in replicas.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in replicas.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        provisioner.stop()
        print("\n".join(p.read_text()[-3000:] for p in sorted(installation.data_dir.glob("serve-*.log"))))
