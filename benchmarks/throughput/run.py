"""Research throughput (issue 13): successful experiments per week, expbot against the alternatives.

A seeded replay of a week on a 128-GPU cluster (plus 1-GPU spot runs) with failures drawn from
published figures (see replay.py) is run under each arm on the same seeds; the figures are medians
over the seeds with 95% bootstrap intervals.

Run: .venv/bin/python benchmarks/throughput/run.py [--quick] [--seed S] [--seeds N] [--chart PATH]
--quick is the CI smoke run: 3 seeds, the published-rates scenario only.
The full run adds a stress scenario (node incidents x25, an assumption, on the first 15 seeds to stay
under 5 minutes on 2 cores) where the failure catalog and stall detection have more to do.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.throughput.baselines import JobWithPolicy, PlainJob, SkyPilotManaged  # noqa: E402
from benchmarks.throughput.expbot_arm import expbot_arms  # noqa: E402
from benchmarks.throughput.replay import DAY, SpotTrace, generate  # noqa: E402
from benchmarks.throughput.report import EXTRA, chart, summarise, table  # noqa: E402
from benchmarks.throughput.sim import World  # noqa: E402

HORIZON = 14 * DAY  # arrivals stop after 7 days; what is still running may finish (or give up) in the next 7
STRESS_SCALE, STRESS_SEEDS = 25.0, 15
_SPOT: SpotTrace | None = None


def arms() -> dict[str, object]:
    """Every arm by name, as a factory of its controller for a World."""
    return {"k8s Job": PlainJob, "Job+podFailurePolicy": JobWithPolicy, "SkyPilot managed": SkyPilotManaged,
            **expbot_arms()}


def one_seed(job: tuple[int, float]) -> dict[str, dict[str, float]]:
    """Every arm on one seed's week: arm -> figures."""
    global _SPOT
    seed, scale = job
    _SPOT = _SPOT or SpotTrace()
    week = generate(seed, _SPOT, failure_scale=scale)
    return {name: World(week, factory, HORIZON).run().figures() for name, factory in arms().items()}  # type: ignore[arg-type]


def scenario(seeds: list[int], scale: float, workers: int) -> dict[str, list[dict[str, float]]]:
    """Figures of every arm on every seed, in seed order."""
    jobs = [(seed, scale) for seed in seeds]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            per_seed = list(pool.map(one_seed, jobs))
    else:
        per_seed = [one_seed(job) for job in jobs]
    return {name: [figures[name] for figures in per_seed] for name in arms()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 3 seeds, published rates only")
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--seeds", type=int, default=None, help="how many seeds (default 30; 3 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--chart", type=Path, default=REPO / "benchmarks" / "throughput" / "results" / "throughput.png")
    args = parser.parse_args(argv)
    count = args.seeds or (3 if args.quick else 30)
    seeds = list(range(args.seed, args.seed + count))
    started = time.monotonic()
    scenarios = [("published rates", 1.0)] + ([] if args.quick else [(f"stress: node incidents x{STRESS_SCALE:g}", STRESS_SCALE)])
    for n, (label, scale) in enumerate(scenarios):
        used = seeds if n == 0 else seeds[:STRESS_SEEDS]
        summary = summarise(scenario(used, scale, args.workers))
        print(f"\n== {label}: medians over seeds {used[0]}..{used[-1]} [95% bootstrap CI] ==")
        print(table(summary))
        print()
        print(table(summary, EXTRA, ci=False))
        path = args.chart if n == 0 else args.chart.with_name(args.chart.stem + "-stress" + args.chart.suffix)
        chart(summary, f"Research throughput, {label}: medians over {len(used)} seeds, 95% CI", path)
        print(f"chart: {path}")
    print(f"\nwall time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
