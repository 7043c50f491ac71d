"""`expbot status` on the Kubernetes backend names the running attempt's pod and node (#15.9): what
a person needs to `kubectl delete pod` it, or to look at the node, as the local quick start kills a pid."""
from __future__ import annotations

import re
from pathlib import Path

from tests.cluster.provisioner import FakeProvisioner
from tests.integration.cli_harness import Expbot
from tests.k8s.cluster_helpers import lifecycle
from tests.k8s.harness import serve_replica, write_config
from tests.polling import wait_for


def test_status_shows_the_running_attempts_pod_and_node(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    labels, annotations = lifecycle(ready="200ms", complete="1h")
    config = write_config(tmp_path / "expbot.toml", pod_labels=labels, pod_annotations=annotations)
    installation = Expbot(
        tmp_path / "data", EXPBOT_BACKEND="kubernetes", EXPBOT_K8S_KUBECONFIG=str(k8s_cluster.kubeconfig),
        EXPBOT_K8S_NAMESPACE=k8s_namespace, EXPBOT_CONFIG_FILE=str(config), EXPBOT_LEADER_ELECTION="false",
    )
    installation.data_dir.mkdir(parents=True)
    installation.cli("db", "upgrade")
    provisioner = FakeProvisioner(k8s_api, k8s_namespace).start()
    serve = serve_replica(installation, "replica-a")
    try:
        installation.cli("launch", "seen", "--gpus", "1", "--gpu-type", "a100", "--", "python", "train.py")
        exp = wait_for(lambda: (s := installation.status("seen"))["state"] == "RUNNING" and s, 60, "seen to run")
        process = wait_for(lambda: (p := installation.status("seen").get("process")) and p["pods"][0]["node"] and p,
                           30, "status to name the pod's node")
        (pod,) = process["pods"]
        assert pod["name"].startswith(f"expbot-{exp['id'][:8]}-a1") and process["namespace"] == k8s_namespace, process
        shown = installation.cli("status", "seen").stdout
        assert re.search(rf"pod {re.escape(pod['name'])} on node {re.escape(pod['node'])} \(Running\)", shown), shown
    finally:
        serve.kill()
        serve.wait(timeout=10)
        provisioner.stop()
