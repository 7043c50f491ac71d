"""The gang mode of benchmarks/k8s_restart_latency.py (`--gang N`): one pod of an N-node gang fails ->
every pod of the next attempt created, on the KWOK test control plane, backoff 0. One experiment
(--experiments is ignored: the nodes hold one gang), with --max-restarts at least --failures.

Two extra fake a100 nodes join the cluster's two for the run (removed afterwards), so that a 4-node
gang of 8 GPUs a node has 4 nodes. Each experiment is `--nodes N --gpus 8`; once every pod of an
attempt runs, this driver makes exactly one of them (rank attempt mod N) fail with exit 1 after
--fail-after (kwok's fail stage, set on that pod alone). Client-side timestamps from two watches:
  t_fail = first sighting of a failed pod of attempt n,
  t_next = first sighting of the last (N-th) pod of attempt n+1: the whole next gang exists.
Targets: p50 < 1 s, p99 < 3 s.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from benchmarks.k8s_restart_latency import Sightings, attempt_key, summary_ms, test_cluster
from benchmarks.stats import percentile
from tests.cluster.nodes import gpu_node_manifest, node_is_ready
from tests.k8s import cluster_helpers, harness
from tests.polling import wait_for

TARGET_P50_S, TARGET_P99_S = 1.0, 3.0
EXTRA_NODES = ("bench-a100-2", "bench-a100-3")
RUNNING = {"ready": "200ms", "complete": "24h", "terminate": "200ms"}


class GangSightings(Sightings):
    """Sightings, plus the first sighting of every pod (to tell when a whole gang exists)."""

    def __init__(self, api: Any, namespace: str, size: int) -> None:
        super().__init__(api, namespace)
        self.size = size
        self.pods_seen: dict[tuple[str, int], dict[str, float]] = {}

    def _on_pod(self, event_type: str, raw: dict[str, Any], at: float) -> None:
        key = attempt_key(raw)
        if key is not None:
            with self._lock:
                self.pods_seen.setdefault(key, {}).setdefault(raw["metadata"]["name"], at)
        super()._on_pod(event_type, raw, at)

    def restarts(self) -> dict[tuple[str, int], float]:
        """t_next - t_fail per failed attempt whose successor's whole gang was seen."""
        with self._lock:
            found = {}
            for (exp, n), failed in self.pod_failed.items():
                seen = self.pods_seen.get((exp, n + 1), {})
                if len(seen) >= self.size:
                    found[(exp, n)] = sorted(seen.values())[self.size - 1] - failed
            return found


@contextlib.contextmanager
def extra_nodes(api: Any) -> Any:
    """Two more fake a100 nodes for the run, deleted afterwards."""
    core = client.CoreV1Api(api)
    existing = {n.metadata.name for n in core.list_node().items}
    for name in EXTRA_NODES:
        if name not in existing:
            core.create_node(gpu_node_manifest(name, "a100"))
    try:
        wait_for(lambda: all(node_is_ready(core.read_node(n)) for n in EXTRA_NODES), timeout=60,
                 what="the extra a100 nodes Ready")
        yield
    finally:
        for name in EXTRA_NODES:
            with contextlib.suppress(client.ApiException):
                core.delete_node(name)


def fail_one_pod(world: harness.World, namespace: str, size: int, patched: set[tuple[str, int]],
                 fail_after: str) -> None:
    """For each attempt whose whole gang runs, make one pod (rank attempt mod size) fail with exit 1."""
    pods = world.core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/managed-by=expbot").items
    gangs: dict[tuple[str, int], list[Any]] = {}
    for pod in pods:
        key = attempt_key({"metadata": {"labels": pod.metadata.labels}})
        if key is not None and pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
            gangs.setdefault(key, []).append(pod)
    labels, annotations = cluster_helpers.lifecycle(fail=fail_after, fail_reason="Error", fail_exit_code=1,
                                                    fail_message="bench: rank failed")  # no log read
    for key, members in gangs.items():
        if key in patched or len(members) < size:
            continue
        rank = key[1] % size
        victim = next(p for p in members if p.metadata.annotations.get("batch.kubernetes.io/job-completion-index") == str(rank))
        world.core.patch_namespaced_pod(victim.metadata.name, namespace,
                                        {"metadata": {"labels": labels, "annotations": annotations}})
        patched.add(key)


def run(args: argparse.Namespace) -> int:
    """Measure --failures gang restarts and print the report; 0 if the targets were met, else 1."""
    size = args.gang
    # One gang at a time: the 4 a100 nodes hold one 4 x 8 gang, a second would wait half-placed.
    # Each failure is the user's (exit 1), so it has restarts enough for every failure measured.
    experiments, max_restarts = 1, max(args.max_restarts, args.failures)
    work = Path(tempfile.mkdtemp(prefix="expbot-k8s-gang-"))
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        cluster = stack.enter_context(test_cluster(args.kubeconfig, work))
        api = cluster.api_client()
        stack.callback(api.close)
        stack.enter_context(extra_nodes(api))
        namespace = stack.enter_context(cluster_helpers.fresh_namespace(api, "bench", timeout=60))
        world = stack.enter_context(harness.running_expbot(
            work, cluster.kubeconfig, namespace, api, pod_behaviour=RUNNING,
            kubernetes='shared_storage_class = "shared-rwx"'))
        seen = stack.enter_context(GangSightings(api, namespace, size))
        started = time.monotonic()
        for i in range(experiments):
            world.launch(f"gang-{i} --nodes {size} --gpus 8 --gpu-type a100 --max-restarts {max_restarts} "
                         "-- torchrun train.py", owner="bench")
        patched: set[tuple[str, int]] = set()
        deadline = started + args.timeout
        while len(seen.restarts()) < args.failures and time.monotonic() < deadline:
            fail_one_pod(world, namespace, size, patched, args.fail_after)
            time.sleep(0.2)
        wall = time.monotonic() - started
        restarts = seen.restarts()
        keys = sorted(restarts, key=lambda k: seen.pod_failed[k])[:args.failures]
        measured = [restarts[k] for k in keys]
        # The part that is expbot's: failure seen -> the next Job created (the rest is the Job controller's).
        to_job = [seen.job_added[(e, n + 1)] - seen.pod_failed[(e, n)] for e, n in keys if (e, n + 1) in seen.job_added]
    print(f"gang: {experiments} experiment(s) of {size} nodes x 8 GPUs (a100), one pod of each attempt fails "
          f"exit 1 {args.fail_after} after the whole gang runs; backoff 0  wall: {wall:.1f} s")
    print(f"gangs (Jobs seen): {len(seen.job_added)}  failed pods seen: {len(seen.pod_failed)}  "
          f"restarts measured: {len(measured)}")
    if not measured:
        print("no restart was measured")
        return 1
    print(f"pod failed -> next attempt's Job ADDED:          {summary_ms(to_job)}")
    print(f"pod failed -> every pod of the next gang created: {summary_ms(measured)}")
    p50, p99 = statistics.median(measured), percentile(measured, 0.99)
    print(f"targets p50 < {TARGET_P50_S:g} s: {'met' if p50 < TARGET_P50_S else 'MISSED'}  "
          f"p99 < {TARGET_P99_S:g} s: {'met' if p99 < TARGET_P99_S else 'MISSED'}")
    return 0 if p50 < TARGET_P50_S and p99 < TARGET_P99_S and len(measured) >= args.failures else 1
