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
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from kubernetes import client  # noqa: E402

from benchmarks.k8s_restart_latency import summary_ms, test_cluster  # noqa: E402
from benchmarks.k8s_scale_report import LeadRun, Progress, ScaleResult, print_report  # noqa: E402
from benchmarks.meters import RequestCounter, Sampler, Timed, process_cpu, thread_cpu, vm_rss_kb  # noqa: E402
from bot.serve import lead  # noqa: E402
from core import commands  # noqa: E402
from tests.cluster.nodes import gpu_node_manifest, node_is_ready  # noqa: E402
from tests.k8s import cluster_helpers, harness  # noqa: E402
from tests.polling import wait_for  # noqa: E402

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
            """Start the provisioner's process."""
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _PROVISIONER, str(kubeconfig), self.namespace, "cleanup" if cleanup else "-"],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            return self

        def stop(self) -> None:
            """SIGTERM it and wait (killing it if it hangs); with cleanup it deletes its PVs first."""
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
    """How many experiments are in each state."""
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


@dataclass
class Setup:
    """The cluster side of a run, ready to launch into: expbot built but not yet leading, and the meters on it."""

    nodes: list[str]
    world: harness.World
    counter: RequestCounter
    engine: sa.Engine
    sampler: Sampler


def parse_args() -> argparse.Namespace:
    """The command line."""
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
    return parser.parse_args()


def set_up(stack: contextlib.ExitStack, args: argparse.Namespace, work: Path, run_seconds: float) -> Setup:
    """Cluster, extra nodes, namespace and expbot (not leading), each torn down by `stack` in reverse order."""
    if not args.keep:  # etcd's data and the logs: hundreds of MB after thousands of experiments
        stack.callback(shutil.rmtree, work, ignore_errors=True)
    cluster = stack.enter_context(test_cluster(args.kubeconfig, work, args.cluster_qps))
    admin = cluster.api_client()
    stack.callback(admin.close)
    t0 = time.monotonic()
    nodes = add_nodes(admin, args.experiments // 100 + 1)
    print(f"{len(nodes)} extra nodes of {PODS_PER_NODE} GPUs Ready in {time.monotonic() - t0:.1f} s", flush=True)
    namespace = stack.enter_context(cluster_helpers.fresh_namespace(admin, "scale", timeout=60))
    # The provisioner runs in a child process so that this process's CPU and memory are expbot's own.
    stack.enter_context(mock.patch.object(
        harness, "FakeProvisioner", subprocess_provisioner(cluster.kubeconfig, cleanup=args.kubeconfig is not None)))
    behaviour = {"ready": "1s", "complete": f"{run_seconds:g}s"}
    world = stack.enter_context(harness.running_expbot(
        work, cluster.kubeconfig, namespace, admin, pod_behaviour=behaviour, start=False,
        k8s_resync_seconds=args.resync))
    bot = world.bot
    api = bot.backend.batch.api_client  # type: ignore[attr-defined]
    # One ApiClient for Jobs and pods: counting its requests counts all of expbot's.
    assert api is bot.backend.core.api_client  # type: ignore[attr-defined]
    counter = RequestCounter(api)
    engine = sa.create_engine(bot.settings.resolved_database_url())
    stack.callback(engine.dispose)
    sampler = stack.enter_context(Sampler())
    return Setup(nodes, world, counter, engine, sampler)


def launch_all(bot: Any, n: int) -> int:
    """Launch n experiments through the bus, with nobody leading yet; prints the rate; VmRSS (kB) afterwards."""
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
    return rss_after_launch_kb


def lead_thread(bot: Any, stop: threading.Event, profiler: cProfile.Profile | None) -> threading.Thread:
    """expbot's lead loop in a thread (not yet started), under the profiler if there is one."""

    def run_lead() -> None:
        if profiler is None:
            lead(bot, stop)
            return
        # cProfile profiles only the thread that enables it: enable it inside the lead thread.
        profiler.enable()
        try:
            lead(bot, stop)
        finally:
            profiler.disable()

    return threading.Thread(target=run_lead, name="expbot-lead", daemon=True)


def poll_until_succeeded(setup: Setup, n: int, lead_t0: float, timeout: float) -> Progress:
    """Poll the database each second until all n SUCCEEDED, the lead thread dies or `timeout` passes."""
    progress = Progress()
    last_print = 0.0
    # The database, not a watch: watching the cluster here would add its own CPU and memory to expbot's.
    while time.monotonic() - lead_t0 < timeout:
        counts = progress.counts = state_counts(setup.engine)
        now = time.monotonic() - lead_t0
        progress.peak_running = max(progress.peak_running, counts["RUNNING"])
        if progress.all_running_at is None and counts["RUNNING"] == n:
            progress.all_running_at = now
        if progress.first_succeeded_at is None and counts["SUCCEEDED"]:
            progress.first_succeeded_at = now
        if counts["SUCCEEDED"] == n:
            progress.all_succeeded_at = now
            break
        if not setup.world.thread.is_alive():
            print("expbot's lead thread died", flush=True)
            break
        if now - last_print >= 15:
            print(f"  {now:6.0f} s: {dict(sorted(counts.items()))}  rss {vm_rss_kb() / 1024:.0f} MB", flush=True)
            last_print = now
        time.sleep(1.0)
    return progress


def lead_until_succeeded(setup: Setup, args: argparse.Namespace) -> LeadRun:
    """Start expbot leading, wait until all succeeded, measure the leading phase and stop the lead thread."""
    world, sampler, counter = setup.world, setup.sampler, setup.counter
    profiler = cProfile.Profile() if args.profile else None
    world.thread = lead_thread(world.bot, world.stop, profiler)
    full_passes = Timed(world.bot.supervisor, "reconcile_once")
    reconciles = Timed(world.bot.supervisor, "reconcile")
    writes0 = counter.snapshot()
    cpu_lead0, lead_t0 = process_cpu(), time.monotonic()
    poll_cpu0, sampler_cpu0 = time.thread_time(), sampler.cpu
    world.thread.start()
    progress = poll_until_succeeded(setup, args.experiments, lead_t0, args.timeout)
    lead_wall, lead_cpu = time.monotonic() - lead_t0, process_cpu() - cpu_lead0
    # The claim is deleted right after SUCCEEDED is committed: let the last deletes go out.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: counter.snapshot()[("DELETE", "persistentvolumeclaims")]
                 - writes0[("DELETE", "persistentvolumeclaims")] >= progress.counts["SUCCEEDED"],
                 timeout=20, interval=0.2)
    run = LeadRun(
        progress=progress, t0=lead_t0, wall=lead_wall, cpu=lead_cpu,
        writes=counter.snapshot() - writes0, backlog=outbox_backlog(setup.engine),
        # The polling runs on this (the main) thread, the sampler on its own: neither is expbot's CPU.
        bench_cpu=(time.thread_time() - poll_cpu0) + (sampler.cpu - sampler_cpu0),
        threads=thread_cpu(), ru_maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        full_passes=full_passes.durations, reconciles=reconciles.durations)
    world.stop.set()
    world.thread.join(timeout=60)
    if profiler is not None:
        profiler.dump_stats(str(args.profile))
    return run


def main() -> int:
    """Run the benchmark once and print its report; 0 if every target was met, else 1."""
    args = parse_args()
    n = args.experiments
    run_seconds = args.run_seconds if args.run_seconds is not None else 60 + 0.12 * n
    work = Path(tempfile.mkdtemp(prefix="expbot-k8s-scale-"))
    rss_start_kb = vm_rss_kb()
    with contextlib.ExitStack() as stack:
        setup = set_up(stack, args, work, run_seconds)
        rss_after_launch_kb = launch_all(setup.world.bot, n)
        run = lead_until_succeeded(setup, args)
    # Reported once everything is torn down, as before the split: the sampler has stopped by then.
    return print_report(ScaleResult(
        experiments=n, nodes=len(setup.nodes), run_seconds=run_seconds, resync=args.resync, profile=args.profile,
        rss_start_kb=rss_start_kb, rss_after_launch_kb=rss_after_launch_kb, sampler=setup.sampler, lead=run))


if __name__ == "__main__":
    raise SystemExit(main())
