"""Calibration run (issue 13, item 4): the simulated expbot arm against the real expbot on KWOK.

One scenario of the replay (calibration.py: seed 1's first 100 experiments, node incidents x200,
24 simulated hours) is run twice: by the simulation's expbot arm, and by a whole expbot
(tests/k8s/harness.py: bootstrap, SQLite, the Kubernetes backend, leading) on the KWOK test control
plane with 16 fake 8-GPU nodes named as the simulation's (node-00..node-15) plus 8 spot nodes, time
compressed by --compression (kwok_world.py). Its kube-scheduler bin-packs GPUs as the simulation does
(scheduler_profile(); a --kubeconfig cluster keeps its own scheduler). Every duration the real side sees is divided by it:
arrivals, run lengths, failure times, spot windows, the person's delays, --max-runtime,
--stall-timeout, EXPBOT_BACKOFF_*, EXPBOT_STOP_GRACE_SECONDS. The control plane's own latencies are
not (pod start ~0.3 s, a restart ~1 s: x120 that is minutes of simulated time).

Prints both sides' figures and whether the counted ones agree within 10%.
Run: .venv/bin/python benchmarks/throughput/calibrate.py [--quick] [--seed S] [--experiments N]
--quick: seed 12, 8 experiments, 3 simulated hours (90 s plus the control plane's start).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from benchmarks.throughput.calibration import FULL, HOURS, QUICK, Scenario, comparison, describe, figures, simulate  # noqa: E402
from benchmarks.throughput.replay import SpotTrace  # noqa: E402

# One real second is two simulated minutes: 24 h in 12 min. At x180 (8 min) the control plane's
# uncompressed latencies delayed restarts enough to move later pods to other nodes (README).
COMPRESSION = 120.0
SPOT_NODES = 8


def write_config(path: Path) -> Path:
    """expbot's TOML: a100 runs on the calibration nodes, spot runs on the spot pool; pods run until told."""
    from tests.cluster.nodes import GPU_TOLERATIONS, GPU_TYPE_LABEL

    stage = "stage.kwok.x-k8s.io"
    annotations = {f"pod-ready.{stage}/delay": "200ms", f"pod-ready.{stage}/jitter-delay": "200ms",
                   f"pod-complete.{stage}/delay": "240h", f"pod-complete.{stage}/jitter-delay": "240h",
                   f"pod-terminate.{stage}/delay": "200ms", f"pod-terminate.{stage}/jitter-delay": "200ms"}

    def table(d: dict[str, str]) -> str:
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in d.items()) + " }"

    path.write_text(f"""
[launch]
default_image = "busybox:1.36"
min_runtime = 1  # seconds: runtimes are compressed (an hour is 30 s at x120)
[gpu_types.a100]
price_per_hour = 2.5
node_selector = {{ "{GPU_TYPE_LABEL}" = "calib" }}
[gpu_types.spot]
price_per_hour = 0.9
node_selector = {{ "{GPU_TYPE_LABEL}" = "spot" }}
[kubernetes]
max_gpus_per_node = 8
gpu_tolerations = [{", ".join(table(t) for t in GPU_TOLERATIONS)}]
pod_annotations = {table(annotations)}
image_pull_grace = 5
""")
    return path


NODES = {f"node-{n:02d}": "calib" for n in range(16)} | {f"spot-{n}": "spot" for n in range(SPOT_NODES)}


def scheduler_profile() -> dict[str, Any]:
    """Place as the simulation does (sim.World._fit): the fullest node that fits, ties to the lowest node-NN.

    kube-scheduler's defaults spread pods (LeastAllocated) and break ties at random, so the same node
    incident met different pods in the two worlds; GPU clusters bin-pack with MostAllocated instead.
    """
    from tests.cluster.scheduler_config import binpack_profile

    return binpack_profile(list(NODES))


def add_nodes(api: Any) -> None:
    """node-00..node-15 (the simulation's names) and spot-0..7, 8 GPUs each; waits until Ready and untainted."""
    from tests.cluster.nodes import gpu_node_manifest, node_is_ready
    from tests.cluster.scheduler_config import only_gpu_taints
    from tests.polling import wait_for

    core = client.CoreV1Api(api)
    for name, kind in NODES.items():
        core.create_node(gpu_node_manifest(name, kind))
    # The node lifecycle controller lifts its not-ready taint only after Ready: a pod placed before
    # that could not go to the node the simulation chose.
    wait_for(lambda: sum(node_is_ready(n) and only_gpu_taints(n) for n in core.list_node().items
                         if n.metadata.name in NODES) == len(NODES),
             timeout=120, what="calibration nodes Ready", interval=0.5)


def real_run(scenario: Scenario, compression: float, kubeconfig: Path | None, work: Path,
             spot: SpotTrace) -> tuple[dict[str, Any], dict[str, float]]:
    """The scenario on the control plane with the real expbot: its figures, and timings."""
    from benchmarks.k8s_restart_latency import test_cluster
    from benchmarks.throughput.kwok_world import KwokWorld
    from tests.k8s import cluster_helpers, harness

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(test_cluster(kubeconfig, work, qps=200, scheduler_profile=scheduler_profile()))
        api = cluster.api_client()
        stack.callback(api.close)
        add_nodes(api)
        namespace = stack.enter_context(cluster_helpers.fresh_namespace(api, "calib", timeout=60))
        config = write_config(work / "calibration.toml")
        world = stack.enter_context(harness.running_expbot(
            work, cluster.kubeconfig, namespace, api, config_file=config,
            backoff_base_seconds=10.0 / compression, backoff_cap_seconds=600.0 / compression,
            stop_grace_seconds=30.0 / compression, k8s_resync_seconds=2.0))
        timings["setup_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        kwok = KwokWorld(scenario.week(spot), world.bot, api, namespace, compression, scenario.horizon)
        ledger = kwok.run()
        timings["played_s"] = time.monotonic() - t1
        timings["late_s"] = kwok.sim.late / compression
        timings["api_errors"] = kwok.api_errors
        with world.bot.uow_factory() as uow:
            experiments = {i: uow.experiments.get(i) for i in kwok.runs}
        lead_alive = world.thread.is_alive()
    timings["total_s"] = time.monotonic() - t0
    timings["lead_alive"] = float(lead_alive)
    return figures(ledger, kwok.runs, {i: e for i, e in experiments.items() if e is not None}), timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seed 12, 8 experiments, 3 simulated hours")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--experiments", type=int, default=None)
    parser.add_argument("--hours", type=float, default=None, help="simulated hours played")
    parser.add_argument("--compression", type=float, default=COMPRESSION)
    parser.add_argument("--kubeconfig", type=Path, default=None, help="an existing cluster (nodes are added)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (cluster logs, database)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    scenario = Scenario(seed=base.seed if args.seed is None else args.seed,
                        experiments=args.experiments or base.experiments,
                        horizon=(args.hours * HOURS) if args.hours else base.horizon, failure_scale=base.failure_scale)
    spot = SpotTrace()
    print(f"scenario: seed {scenario.seed}, {describe(scenario.week(spot).items)}; node incidents "
          f"x{scenario.failure_scale:g}; {scenario.horizon / HOURS:g} simulated hours; compression x{args.compression:g} "
          f"({scenario.horizon / args.compression:.0f} s real)", flush=True)
    ledger, runs, experiments = simulate(scenario, spot)
    simulated = figures(ledger, runs, experiments)
    work = Path(tempfile.mkdtemp(prefix="expbot-calibration-"))
    try:
        real, timings = real_run(scenario, args.compression, args.kubeconfig, work, spot)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text, ok = comparison(simulated, real)
    print(text)
    print(f"\nreal run: setup {timings['setup_s']:.0f} s, played {timings['played_s']:.0f} s, total "
          f"{timings['total_s']:.0f} s; events played up to {timings['late_s']:.2f} s late; "
          f"API errors {timings['api_errors']:.0f}"
          + ("" if timings["lead_alive"] else "; expbot's lead thread DIED"))
    print(f"agreement within 10% on every counted figure: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
