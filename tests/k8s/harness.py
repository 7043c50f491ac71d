"""A whole expbot (bootstrap, SQLite, the Kubernetes backend) leading against the test control plane."""
from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from adapters.k8s import names
from bot.bootstrap import Expbot, bootstrap
from bot.config import Settings
from bot.serve import lead
from core import commands
from core.model import Experiment, State
from tests.cluster.provisioner import FakeProvisioner
from tests.integration.cli_harness import EXPBOT, REPO
from tests.integration.cli_harness import Expbot as CliExpbot
from tests.k8s.cluster_helpers import GPU_TOLERATIONS, GPU_TYPE_LABEL, lifecycle
from tests.polling import wait_for

REPORT_SECRET = "test-report-secret"


def write_config(path: Path, *, pod_labels: dict[str, str], pod_annotations: dict[str, str],
                 keep_checkpoints: bool = False, watch_nodes: bool = False, kubernetes: str = "") -> Path:
    """A TOML config: two GPU types on the fake nodes, kwok lifecycle steering on every pod (plus `kubernetes` lines)."""
    def table(d: dict[str, str]) -> str:
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in d.items()) + " }"

    tolerations = ", ".join(table(t) for t in GPU_TOLERATIONS)
    path.write_text(f"""
[launch]
default_image = "busybox:1.36"
[gpu_types.a100]
price_per_hour = 2.5
node_selector = {{ "{GPU_TYPE_LABEL}" = "a100" }}
[gpu_types.h100]
price_per_hour = 4.0
node_selector = {{ "{GPU_TYPE_LABEL}" = "h100" }}
[kubernetes]
max_gpus_per_node = 8
keep_checkpoints = {str(keep_checkpoints).lower()}
watch_nodes = {str(watch_nodes).lower()}
gpu_tolerations = [{tolerations}]
pod_labels = {table(pod_labels)}
pod_annotations = {table(pod_annotations)}
image_pull_grace = 5
{kubernetes}
""")
    return path


def serve_replica(installation: CliExpbot, identity: str) -> subprocess.Popen:
    """A real `expbot serve` process of this installation, as replica `identity` (its pod name); log in the data dir."""
    log = open(installation.data_dir / f"serve-{identity}.log", "w")
    return subprocess.Popen([*EXPBOT, "serve"], cwd=REPO, env=installation.env | {"EXPBOT_POD_NAME": identity},
                            stdout=log, stderr=subprocess.STDOUT)


class World:
    """expbot leading in a thread, plus admin API handles to look at the cluster."""

    def __init__(self, bot: Expbot, api: Any, namespace: str) -> None:
        self.bot, self.api, self.namespace = bot, api, namespace
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lead, args=(bot, self.stop), name="expbot-lead", daemon=True)

    def launch(self, text: str, owner: str = "alice", key: str | None = None) -> Experiment:
        """Launch one experiment from a `launch` line."""
        result = self.bot.bus.handle(commands.LaunchExperiment(text=text, owner=owner, idempotency_key=key))
        return result.experiments[0]

    def get(self, name: str) -> Experiment:
        """The stored experiment, freshly read."""
        with self.bot.uow_factory() as uow:
            found = uow.experiments.get_by_name(name)
        assert found is not None
        return found

    def wait_state(self, name: str, *states: State, timeout: float = 30.0) -> Experiment:
        """Wait until the experiment is in one of `states`."""
        wait_for(lambda: self.get(name).state in states, timeout=timeout,
                 what=f"{name} to reach {'/'.join(states)} (now {self.get(name).state}: {self.get(name).state_reason})")
        return self.get(name)

    def jobs(self, experiment_id: str) -> list[client.V1Job]:
        """The experiment's Jobs, by attempt."""
        found = self.batch.list_namespaced_job(self.namespace, label_selector=f"{names.EXPERIMENT}={experiment_id}")
        return sorted(found.items, key=lambda j: int(j.metadata.labels[names.ATTEMPT]))

    def pods(self, experiment_id: str) -> list[client.V1Pod]:
        """The experiment's pods."""
        return self.core.list_namespaced_pod(self.namespace, label_selector=f"{names.EXPERIMENT}={experiment_id}").items

    def pvc_exists(self, experiment_id: str) -> bool:
        """Whether the experiment's checkpoint claim still exists."""
        claims = self.core.list_namespaced_persistent_volume_claim(self.namespace, label_selector=f"{names.EXPERIMENT}={experiment_id}")
        return any(c.metadata.deletion_timestamp is None for c in claims.items)


def job_env(job: client.V1Job) -> dict[str, str]:
    """The training container's env, as a dict."""
    return {e.name: e.value or "" for e in job.spec.template.spec.containers[0].env}  # the API drops ""


@contextmanager
def running_expbot(
    tmp_path: Path, kubeconfig: Path, namespace: str, api: Any, *, pod_behaviour: dict[str, Any] | None = None,
    keep_checkpoints: bool = False, start: bool = True, watch_nodes: bool = False, kubernetes: str = "",
    **settings: Any,
) -> Iterator[World]:
    """expbot configured for the test namespace; leading (supervising) unless start=False."""
    labels, annotations = lifecycle(**(pod_behaviour or {}))
    config = write_config(tmp_path / "expbot.toml", pod_labels=labels, pod_annotations=annotations,
                          keep_checkpoints=keep_checkpoints, watch_nodes=watch_nodes, kubernetes=kubernetes)
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data", "backend": "kubernetes", "k8s_kubeconfig": kubeconfig,
        "k8s_namespace": namespace, "config_file": config, "leader_election": False,
        "backoff_base_seconds": 0.0, "backoff_cap_seconds": 0.0, "stop_grace_seconds": 1,
        "report_secret": REPORT_SECRET, "report_url": "http://expbot.invalid/report",
    }
    values.update(settings)
    bot = bootstrap(Settings(_env_file=None, **values))
    world = World(bot, api, namespace)
    provisioner = FakeProvisioner(api, namespace).start()
    if start:
        world.thread.start()
    try:
        yield world
    finally:
        world.stop.set()
        if world.thread.is_alive():
            world.thread.join(timeout=15)
        provisioner.stop()
