"""Two real `expbot serve` replicas on the Kubernetes backend: one leads; killing it hands over."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from kubernetes import client

from adapters.k8s import names
from tests.integration.cli_harness import Expbot
from tests.k8s.harness import serve_replica, write_config
from tests.k8s.cluster_helpers import lifecycle
from tests.cluster.provisioner import FakeProvisioner
from tests.polling import wait_for

LEASE = "expbot-leader"


def test_killing_the_leader_hands_supervision_over_within_the_lease(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    labels, annotations = lifecycle(ready="200ms", complete="1h")
    config = write_config(tmp_path / "expbot.toml", pod_labels=labels, pod_annotations=annotations)
    installation = Expbot(
        tmp_path / "data", EXPBOT_BACKEND="kubernetes", EXPBOT_K8S_KUBECONFIG=str(k8s_cluster.kubeconfig),
        EXPBOT_K8S_NAMESPACE=k8s_namespace, EXPBOT_CONFIG_FILE=str(config), EXPBOT_LEADER_ELECTION="true",
        EXPBOT_LEASE_DURATION_SECONDS="3", EXPBOT_LEASE_RENEW_DEADLINE_SECONDS="2", EXPBOT_LEASE_RETRY_SECONDS="0.5",
        EXPBOT_K8S_RESYNC_SECONDS="1",
    )
    installation.data_dir.mkdir(parents=True)
    installation.cli("db", "upgrade")
    leases = client.CoordinationV1Api(k8s_api)
    batch = client.BatchV1Api(k8s_api)
    provisioner = FakeProvisioner(k8s_api, k8s_namespace).start()
    replicas = {name: serve_replica(installation, name) for name in ("replica-a", "replica-b")}
    try:
        def holder() -> str:
            try:
                return leases.read_namespaced_lease(LEASE, k8s_namespace).spec.holder_identity or ""
            except client.ApiException:
                return ""

        leader = wait_for(holder, timeout=30, what="a replica to take the Lease")
        follower = next(name for name in replicas if name != leader)
        # Two replicas on one data dir are legal on Kubernetes (#15.5); the leader keeps the heartbeat.
        assert all(replica.poll() is None for replica in replicas.values())
        wait_for(lambda: _beating(installation) == ["kubernetes"], timeout=30, what="the leader's heartbeat")
        launched = installation.cli("launch", "first", "--gpus", "1", "--gpu-type", "a100", "--", "python", "train.py")
        assert "no `expbot serve` is running" not in launched.stdout
        jobs = lambda: batch.list_namespaced_job(k8s_namespace, label_selector=names.MANAGED_SELECTOR).items  # noqa: E731
        wait_for(lambda: len(jobs()) == 1, timeout=30, what="the leader to create the first Job")

        replicas[leader].send_signal(signal.SIGKILL)
        replicas[leader].wait(timeout=10)
        killed_at = time.monotonic()
        wait_for(lambda: holder() == follower, timeout=15, what=f"{follower} to take over the Lease")
        took_over = time.monotonic() - killed_at
        # Lease duration + two retry periods, plus slack for two serve processes and the API
        # calls on a loaded machine.
        assert took_over < 3 + 2 * 0.5 + 3, f"handover took {took_over:.1f}s"

        installation.cli("launch", "second", "--gpus", "1", "--gpu-type", "a100", "--", "python", "train.py")
        wait_for(lambda: len(jobs()) == 2, timeout=30, what="the new leader to create the second Job")
        assert installation.status("first")["state"] == "RUNNING"
        assert replicas[follower].poll() is None
        replicas[follower].send_signal(signal.SIGTERM)
        assert replicas[follower].wait(timeout=20) == 0  # a clean stop releases the Lease, not "lost" it
        wait_for(lambda: holder() == "", timeout=5, what="the Lease to be released")
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


def _beating(installation: Expbot) -> list[str]:
    """The backends of the serves with a row in serve_heartbeat (the leader's only: followers do not beat)."""
    import sqlite3

    with sqlite3.connect(installation.data_dir / "expbot.db") as db:
        return [backend for (backend,) in db.execute("SELECT backend FROM serve_heartbeat")]
