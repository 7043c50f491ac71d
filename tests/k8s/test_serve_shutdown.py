"""`expbot serve` on the Kubernetes backend stops at once on SIGTERM and hands its Lease back."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from kubernetes import client

from adapters.k8s import names
from tests.cluster.provisioner import FakeProvisioner
from tests.integration.cli_harness import Expbot
from tests.k8s.cluster_helpers import lifecycle
from tests.k8s.harness import serve_replica, write_config
from tests.polling import wait_for

LEASE = "expbot-leader"
# The bound. Measured on the 2-core test machine with the control plane running: see the
# printed figures (well under a second once every wait wakes on stop).
EXIT_BOUND_SECONDS = 2.0


def _sigterm_and_time_exit(proc: subprocess.Popen, what: str) -> float:
    """Send SIGTERM, poll until the process exits; seconds from the signal to its exit."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    # The deadline is the Deployment's grace: beyond it Kubernetes would SIGKILL it anyway.
    wait_for(lambda: proc.poll() is not None, timeout=35, what=f"{what} to exit after SIGTERM", interval=0.01)
    took = time.monotonic() - sent
    print(f"{what} exited {took:.2f}s after SIGTERM (exit status {proc.returncode})")
    return took


def test_serve_exits_within_two_seconds_of_sigterm_and_releases_the_lease(
    k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path,
) -> None:
    labels, annotations = lifecycle(ready="200ms", complete="1h")
    config = write_config(tmp_path / "expbot.toml", pod_labels=labels, pod_annotations=annotations)
    installation = Expbot(
        tmp_path / "data", EXPBOT_BACKEND="kubernetes", EXPBOT_K8S_KUBECONFIG=str(k8s_cluster.kubeconfig),
        EXPBOT_K8S_NAMESPACE=k8s_namespace, EXPBOT_CONFIG_FILE=str(config), EXPBOT_LEADER_ELECTION="true",
        # Production's resync (30 s between full passes): the supervisor's wait must end on stop,
        # not when it times out. Short lease timings so a follower would take a free Lease quickly.
        EXPBOT_K8S_RESYNC_SECONDS="30", EXPBOT_LEASE_DURATION_SECONDS="3",
        EXPBOT_LEASE_RENEW_DEADLINE_SECONDS="2", EXPBOT_LEASE_RETRY_SECONDS="0.5",
    )
    installation.data_dir.mkdir(parents=True)
    installation.cli("db", "upgrade")
    leases = client.CoordinationV1Api(k8s_api)
    batch = client.BatchV1Api(k8s_api)
    provisioner = FakeProvisioner(k8s_api, k8s_namespace).start()
    replicas = {name: serve_replica(installation, name) for name in ("replica-a", "replica-b")}

    def lease() -> client.V1LeaseSpec | None:
        try:
            return leases.read_namespaced_lease(LEASE, k8s_namespace).spec
        except client.ApiException:
            return None

    try:
        leader = wait_for(lambda: (spec := lease()) and spec.holder_identity, timeout=30, what="a replica to lead")
        follower = next(name for name in replicas if name != leader)
        installation.cli("launch", "first", "--gpus", "1", "--gpu-type", "a100", "--", "python", "train.py")
        jobs = lambda: batch.list_namespaced_job(k8s_namespace, label_selector=names.MANAGED_SELECTOR).items  # noqa: E731
        # The leader has listed, watches Jobs and pods, and supervises: its watches are open now.
        wait_for(lambda: len(jobs()) == 1, timeout=30, what="the leader to create the Job")
        wait_for(lambda: installation.status("first")["state"] == "RUNNING", timeout=30, what="first to run")

        # A follower first (it waits for the Lease), then the leader (it waits in the supervisor
        # and on its watch streams): each must be gone within the bound.
        follower_took = _sigterm_and_time_exit(replicas[follower], f"follower {follower}")
        leader_took = _sigterm_and_time_exit(replicas[leader], f"leader {leader}")
        assert replicas[follower].returncode == 0 and replicas[leader].returncode == 0
        assert follower_took < EXIT_BOUND_SECONDS, f"the follower took {follower_took:.2f}s"
        assert leader_took < EXIT_BOUND_SECONDS, f"the leader took {leader_took:.2f}s"

        released = lease()
        assert released is not None and not released.holder_identity, f"not released: {released}"
        assert released.lease_duration_seconds == 1  # the elector's release, not an expiry
        # Not re-acquired: the release is the last write (nobody is left to write another).
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            spec = lease()
            assert spec is not None and not spec.holder_identity and spec.renew_time == released.renew_time
            time.sleep(0.1)
        log = (installation.data_dir / f"serve-{leader}.log").read_text()
        assert log.count("started leading") == 1, log[-4000:]
    finally:
        for proc in replicas.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        provisioner.stop()
        print("\n".join(p.read_text()[-3000:] for p in sorted(installation.data_dir.glob("serve-*.log"))))

