"""Benchmark: N concurrent 1-GPU experiments on the KWOK test control plane, from launch to all SUCCEEDED.

Starts the test control plane (or uses --kubeconfig's cluster), adds N/100+1 fake a100 nodes of 110
GPUs / 110 pods, launches N experiments through expbot's bus (timed on its own, with the supervisor not
yet leading), then starts expbot leading in-process (tests/k8s/harness.py, SQLite) and waits until every
experiment SUCCEEDED; each pod runs --run-seconds after it is Running, then exits 0.
The claim provisioner runs in a subprocess and the benchmark watches nothing (it polls the database),
so the process's CPU and memory are expbot's own. Prints, over the leading phase:
  peak RSS (ru_maxrss, and the highest VmRSS sampled) and average CPU in cores (process CPU / wall),
  Kubernetes API write requests (POST/PUT/PATCH/DELETE on expbot's ApiClient) per experiment lifecycle,
  the time until all N were RUNNING at once and until all N SUCCEEDED.
Targets: RSS < 300 MB, under one core on average, <= 5 writes per lifecycle.
Run: .venv/bin/python benchmarks/k8s_scale.py [--experiments 5000] [--run-seconds S] [--resync 30]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Self
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from kubernetes import client  # noqa: E402

from benchmarks.k8s_restart_latency import summary_ms, test_cluster  # noqa: E402
from benchmarks.meters import RequestCounter, Sampler, Timed, process_cpu, thread_cpu, vm_rss_kb  # noqa: E402
from bot.serve import lead  # noqa: E402
from core import commands  # noqa: E402
from tests.cluster.nodes import gpu_node_manifest, node_is_ready  # noqa: E402
from tests.k8s import cluster_helpers, harness  # noqa: E402
from tests.polling import wait_for  # noqa: E402

TARGET_RSS_MB, TARGET_CORES, TARGET_WRITES = 300, 1.0, 5
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PODS_PER_NODE = 110

_PROVISIONER = """
import sys, threading, signal
from kubernetes import config
from tests.cluster.provisioner import FakeProvisioner
api = config.new_client_from_config(config_file=sys.argv[1])
provisioner = FakeProvisioner(api, sys.argv[2]).start()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
while not done.wait(0.5):
    pass
if sys.argv[3] == "cleanup":
    provisioner.stop()  # deletes the PVs it made
"""


def subprocess_provisioner(kubeconfig: Path, cleanup: bool) -> type:
    """A stand-in for tests.cluster.provisioner.FakeProvisioner that runs it in a child process."""

    class SubprocessProvisioner:
        def __init__(self, _api: Any, namespace: str) -> None:
            self.namespace = namespace
            self.proc: subprocess.Popen[bytes] | None = None

        def start(self) -> Self:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _PROVISIONER, str(kubeconfig), self.namespace, "cleanup" if cleanup else "-"],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            return self

        def stop(self) -> None:
            if self.proc is None:
                return
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120 if cleanup else 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    return SubprocessProvisioner


def state_counts(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(sa.text("SELECT state, count(*) FROM experiment GROUP BY state")).all()))


def outbox_backlog(engine: sa.Engine) -> tuple[int, int]:
    """(undelivered, all) events in the outbox."""
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(  # type: ignore[return-value]
            "SELECT sum(delivered_at IS NULL), count(*) FROM outbox_event")).one())


def add_nodes(api: Any, count: int, prefix: str = "bench-a100") -> list[str]:
    """`count` extra fake a100 nodes of 110 GPUs and 110 pods; waits until kwok has them Ready."""
    core = client.CoreV1Api(api)
    names = [f"{prefix}-{i}" for i in range(count)]
    existing = {n.metadata.name for n in core.list_node().items}
    for name in names:
        if name not in existing:
            core.create_node(gpu_node_manifest(name, "a100", gpus=PODS_PER_NODE))
    wait_for(lambda: sum(node_is_ready(n) for n in core.list_node().items if n.metadata.name in names) == count,
             timeout=120, what=f"{count} extra nodes Ready", interval=0.5)
    return names


def fmt_cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=5000)
    parser.add_argument("--run-seconds", type=float, default=None,
                        help="how long each pod runs once Running (default: 60 + 0.12 s per experiment, "
                             "so that all are running at once on two cores)")
    parser.add_argument("--resync", type=float, default=30.0, help="expbot's full resync (k8s_resync_seconds)")
    parser.add_argument("--timeout", type=float, default=1500.0, help="give up this long after leading starts")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (cluster logs, database)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="an existing cluster (nodes are added to it)")
    parser.add_argument("--cluster-qps", type=int, default=1000,
                        help="API QPS for the test cluster's controller-manager and scheduler (0: their defaults, "
                             "20 and 50, which cap the cluster at ~7 new pods a second)")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the lead thread into this file")
    args = parser.parse_args()
    n = args.experiments
    run_seconds = args.run_seconds if args.run_seconds is not None else 60 + 0.12 * n
    work = Path(tempfile.mkdtemp(prefix="expbot-k8s-scale-"))
    behaviour = {"ready": "1s", "complete": f"{run_seconds:g}s"}
    rss_start_kb = vm_rss_kb()

    with contextlib.ExitStack() as stack:
        if not args.keep:  # etcd's data and the logs: hundreds of MB after thousands of experiments
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        cluster = stack.enter_context(test_cluster(args.kubeconfig, work, args.cluster_qps))
        admin = cluster.api_client()
        stack.callback(admin.close)
        t0 = time.monotonic()
        nodes = add_nodes(admin, n // 100 + 1)
        print(f"{len(nodes)} extra nodes of {PODS_PER_NODE} GPUs Ready in {time.monotonic() - t0:.1f} s", flush=True)
        namespace = stack.enter_context(cluster_helpers.fresh_namespace(admin, "scale", timeout=60))
        stack.enter_context(mock.patch.object(
            harness, "FakeProvisioner", subprocess_provisioner(cluster.kubeconfig, cleanup=args.kubeconfig is not None)))
        world = stack.enter_context(harness.running_expbot(
            work, cluster.kubeconfig, namespace, admin, pod_behaviour=behaviour, start=False,
            k8s_resync_seconds=args.resync))
        bot = world.bot
        api = bot.backend.batch.api_client  # type: ignore[attr-defined]
        assert api is bot.backend.core.api_client  # type: ignore[attr-defined]
        counter = RequestCounter(api)
        engine = sa.create_engine(bot.settings.resolved_database_url())
        stack.callback(engine.dispose)
        sampler = stack.enter_context(Sampler())

        # --- launch, with nobody leading yet ---
        cpu0, launch_t0 = process_cpu(), time.monotonic()
        per_launch: list[float] = []
        for i in range(n):
            t = time.monotonic()
            bot.bus.handle(commands.LaunchExperiment(
                text=f"scale-{i:05d} --gpus 1 --gpu-type a100 -- python train.py", owner=f"user{i % 50}"))
            per_launch.append(time.monotonic() - t)
            if (i + 1) % 1000 == 0:
                print(f"  launched {i + 1}/{n} in {time.monotonic() - launch_t0:.1f} s", flush=True)
        launch_wall, launch_cpu = time.monotonic() - launch_t0, process_cpu() - cpu0
        rss_after_launch_kb = vm_rss_kb()
        print(f"launch through the bus: {n} in {launch_wall:.1f} s ({n / launch_wall:.0f}/s, "
              f"{launch_cpu / launch_wall:.2f} cores); per launch {summary_ms(per_launch)}", flush=True)

        # --- lead until all succeeded ---
        profiler = cProfile.Profile() if args.profile else None

        def run_lead(stop: threading.Event) -> None:
            if profiler is None:
                lead(bot, stop)
                return
            profiler.enable()
            try:
                lead(bot, stop)
            finally:
                profiler.disable()

        world.thread = threading.Thread(target=run_lead, args=(world.stop,), name="expbot-lead", daemon=True)
        full_passes = Timed(bot.supervisor, "reconcile_once")
        reconciles = Timed(bot.supervisor, "reconcile")
        writes0 = counter.snapshot()
        cpu_lead0, lead_t0 = process_cpu(), time.monotonic()
        poll_cpu0, sampler_cpu0 = time.thread_time(), sampler.cpu
        world.thread.start()
        all_running_at: float | None = None
        all_succeeded_at: float | None = None
        first_succeeded_at: float | None = None
        peak_running, last_print = 0, 0.0
        counts: Counter[str] = Counter()
        while time.monotonic() - lead_t0 < args.timeout:
            counts = state_counts(engine)
            now = time.monotonic() - lead_t0
            peak_running = max(peak_running, counts["RUNNING"])
            if all_running_at is None and counts["RUNNING"] == n:
                all_running_at = now
            if first_succeeded_at is None and counts["SUCCEEDED"]:
                first_succeeded_at = now
            if counts["SUCCEEDED"] == n:
                all_succeeded_at = now
                break
            if not world.thread.is_alive():
                print("expbot's lead thread died", flush=True)
                break
            if now - last_print >= 15:
                print(f"  {now:6.0f} s: {dict(sorted(counts.items()))}  rss {vm_rss_kb() / 1024:.0f} MB", flush=True)
                last_print = now
            time.sleep(1.0)
        lead_wall, lead_cpu = time.monotonic() - lead_t0, process_cpu() - cpu_lead0
        # The claim is deleted right after SUCCEEDED is committed: let the last deletes go out.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: counter.snapshot()[("DELETE", "persistentvolumeclaims")]
                     - writes0[("DELETE", "persistentvolumeclaims")] >= counts["SUCCEEDED"], timeout=20, interval=0.2)
        writes = counter.snapshot() - writes0
        backlog = outbox_backlog(engine)
        bench_cpu = (time.thread_time() - poll_cpu0) + (sampler.cpu - sampler_cpu0)
        threads = thread_cpu()
        ru_maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        world.stop.set()
        world.thread.join(timeout=60)
        if profiler is not None:
            profiler.dump_stats(str(args.profile))

    cores = (lead_cpu - bench_cpu) / lead_wall
    total_writes = sum(c for (method, _), c in writes.items() if method in WRITE_METHODS)
    per_lifecycle = total_writes / max(1, counts["SUCCEEDED"])
    peak_mb = max(ru_maxrss_mb, sampler.peak_kb / 1024)
    print(f"\nexperiments: {n} x 1 GPU on {len(nodes)} extra nodes; pods run {run_seconds:g} s; "
          f"full resync every {args.resync:g} s")
    print(f"final states: {dict(sorted(counts.items()))}  peak RUNNING at once: {peak_running}")

    def fmt(v: float | None) -> str:
        return f"{v:.1f} s" if v is not None else "never"

    print(f"leading -> all {n} RUNNING: {fmt(all_running_at)}   -> all SUCCEEDED: {fmt(all_succeeded_at)}")
    print(f"RSS: ru_maxrss {ru_maxrss_mb:.0f} MB, highest VmRSS sampled {sampler.peak_kb / 1024:.0f} MB "
          f"(at start {rss_start_kb / 1024:.0f} MB, after launching {rss_after_launch_kb / 1024:.0f} MB, "
          f"median while leading {statistics.median(sampler.samples) / 1024:.0f} MB)")
    print(f"CPU while leading: {lead_cpu:.1f} s over {lead_wall:.1f} s = {cores:.2f} cores "
          f"(the benchmark's own polling, {bench_cpu:.1f} s, subtracted); "
          f"busiest 15 s: {sampler.peak_cores(lead_t0, lead_t0 + lead_wall):.2f} cores")
    phases = (("submitting until all RUNNING", 0.0, all_running_at),
              ("all RUNNING, none done yet", all_running_at, first_succeeded_at),
              ("completing until all SUCCEEDED", first_succeeded_at, all_succeeded_at))
    print("  by phase: " + ", ".join(
        f"{label} {fmt_cores(sampler.cores(lead_t0 + a, lead_t0 + b))}"
        for label, a, b in phases if a is not None and b is not None))
    if full_passes.durations:
        print(f"full passes: {summary_ms(full_passes.durations)} "
              f"(the first one submits what was launched)")
    if reconciles.durations:
        print(f"reconciles of one experiment ({len(reconciles.durations) / max(1, counts['SUCCEEDED']):.1f} "
              f"per lifecycle): {summary_ms(reconciles.durations)}")
    print("  CPU by thread (whole run, launch included): " + ", ".join(f"{name} {sec:.1f} s" for name, sec in
                                      sorted(threads.items(), key=lambda kv: -kv[1])[:8]))
    print(f"outbox when all had succeeded: {backlog[0] or 0} of {backlog[1]} events not yet delivered")
    print(f"API writes while leading: {total_writes} = {per_lifecycle:.2f} per lifecycle")
    for (method, what), count in sorted(writes.items(), key=lambda kv: -kv[1]):
        print(f"  {method:6s} {what:34s} {count:7d}")
    ok = {
        f"RSS < {TARGET_RSS_MB} MB": peak_mb < TARGET_RSS_MB,
        f"CPU < {TARGET_CORES:g} core": cores < TARGET_CORES,
        f"writes <= {TARGET_WRITES}/lifecycle": per_lifecycle <= TARGET_WRITES,
        "all succeeded": all_succeeded_at is not None,
        "all running at once": all_running_at is not None,
    }
    print("targets: " + "  ".join(f"{name}: {'met' if good else 'MISSED'}" for name, good in ok.items()))
    if args.profile:
        print(f"\nprofile of the lead thread ({args.profile}), top 25 by cumulative time:")
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
