"""The figures benchmarks/k8s_scale.py measures, and its printed report and targets.

Kept apart from the benchmark's driver so that each stays short; the printed lines are the benchmark's
interface (tests/k8s/test_benchmark_smoke.py and the README's numbers read them).
"""
from __future__ import annotations

import pstats
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.k8s_restart_latency import summary_ms
from benchmarks.meters import Sampler

TARGET_RSS_MB, TARGET_CORES, TARGET_WRITES = 300, 1.0, 5
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Progress:
    """The experiments' states as polled while leading, and when each milestone was first seen (s after leading)."""

    counts: Counter[str] = field(default_factory=Counter)
    peak_running: int = 0
    all_running_at: float | None = None
    first_succeeded_at: float | None = None
    all_succeeded_at: float | None = None


@dataclass
class LeadRun:
    """What the leading phase measured, from the lead thread's start until all succeeded (or the timeout)."""

    progress: Progress
    t0: float  # time.monotonic() when leading started: the sampler's timestamps are on the same clock
    wall: float
    cpu: float  # the whole process's CPU seconds, the benchmark's own included
    bench_cpu: float  # the benchmark's own polling and sampling, subtracted from `cpu`
    writes: Counter[tuple[str, str]]
    backlog: tuple[int, int]
    threads: dict[str, float]
    ru_maxrss_mb: float
    full_passes: list[float]
    reconciles: list[float]


@dataclass
class ScaleResult:
    """Everything the report prints: the run's settings, the launch phase's memory and the leading phase."""

    experiments: int
    nodes: int
    run_seconds: float
    resync: float
    profile: Path | None
    rss_start_kb: int
    rss_after_launch_kb: int
    sampler: Sampler
    lead: LeadRun


def fmt_cores(value: float | None) -> str:
    """A CPU figure in cores, or n/a where the sampler had too few samples."""
    return "n/a" if value is None else f"{value:.2f} cores"


def fmt_seconds(value: float | None) -> str:
    """A milestone's time, or never where it was not reached."""
    return f"{value:.1f} s" if value is not None else "never"


def expbot_cores(lead: LeadRun) -> float:
    """expbot's own average CPU while leading, in cores (the benchmark's polling subtracted)."""
    return (lead.cpu - lead.bench_cpu) / lead.wall


def writes_per_lifecycle(lead: LeadRun) -> tuple[int, float]:
    """(API writes while leading, writes per succeeded experiment)."""
    total = sum(c for (method, _), c in lead.writes.items() if method in WRITE_METHODS)
    return total, total / max(1, lead.progress.counts["SUCCEEDED"])


def print_states(result: ScaleResult) -> None:
    """The run's shape, final states and milestone times."""
    progress, n = result.lead.progress, result.experiments
    print(f"\nexperiments: {n} x 1 GPU on {result.nodes} extra nodes; pods run {result.run_seconds:g} s; "
          f"full resync every {result.resync:g} s")
    print(f"final states: {dict(sorted(progress.counts.items()))}  peak RUNNING at once: {progress.peak_running}")
    print(f"leading -> all {n} RUNNING: {fmt_seconds(progress.all_running_at)}   "
          f"-> all SUCCEEDED: {fmt_seconds(progress.all_succeeded_at)}")


def print_resources(result: ScaleResult) -> None:
    """Memory, and CPU overall, in its busiest window and per phase of the run."""
    lead, sampler = result.lead, result.sampler
    print(f"RSS: ru_maxrss {lead.ru_maxrss_mb:.0f} MB, highest VmRSS sampled {sampler.peak_kb / 1024:.0f} MB "
          f"(at start {result.rss_start_kb / 1024:.0f} MB, after launching {result.rss_after_launch_kb / 1024:.0f} MB, "
          f"median while leading {statistics.median(sampler.samples) / 1024:.0f} MB)")
    print(f"CPU while leading: {lead.cpu:.1f} s over {lead.wall:.1f} s = {expbot_cores(lead):.2f} cores "
          f"(the benchmark's own polling, {lead.bench_cpu:.1f} s, subtracted); "
          f"busiest 15 s: {sampler.peak_cores(lead.t0, lead.t0 + lead.wall):.2f} cores")
    progress = lead.progress
    phases = (("submitting until all RUNNING", 0.0, progress.all_running_at),
              ("all RUNNING, none done yet", progress.all_running_at, progress.first_succeeded_at),
              ("completing until all SUCCEEDED", progress.first_succeeded_at, progress.all_succeeded_at))
    # A phase whose start or end was never reached has no window to sample: it is left out.
    print("  by phase: " + ", ".join(
        f"{label} {fmt_cores(sampler.cores(lead.t0 + a, lead.t0 + b))}"
        for label, a, b in phases if a is not None and b is not None))


def print_work(lead: LeadRun) -> None:
    """Supervisor pass and reconcile timings, CPU by thread, the outbox backlog and the API writes."""
    if lead.full_passes:
        print(f"full passes: {summary_ms(lead.full_passes)} "
              f"(the first one submits what was launched)")
    if lead.reconciles:
        print(f"reconciles of one experiment ({len(lead.reconciles) / max(1, lead.progress.counts['SUCCEEDED']):.1f} "
              f"per lifecycle): {summary_ms(lead.reconciles)}")
    print("  CPU by thread (whole run, launch included): " + ", ".join(f"{name} {sec:.1f} s" for name, sec in
                                      sorted(lead.threads.items(), key=lambda kv: -kv[1])[:8]))
    print(f"outbox when all had succeeded: {lead.backlog[0] or 0} of {lead.backlog[1]} events not yet delivered")
    total_writes, per_lifecycle = writes_per_lifecycle(lead)
    print(f"API writes while leading: {total_writes} = {per_lifecycle:.2f} per lifecycle")
    for (method, what), count in sorted(lead.writes.items(), key=lambda kv: -kv[1]):
        print(f"  {method:6s} {what:34s} {count:7d}")


def targets(result: ScaleResult) -> dict[str, bool]:
    """Each target's name and whether it was met."""
    lead, progress = result.lead, result.lead.progress
    # ru_maxrss can miss a short peak the sampler saw, and the sampler one between samples: take the higher.
    peak_mb = max(lead.ru_maxrss_mb, result.sampler.peak_kb / 1024)
    return {
        f"RSS < {TARGET_RSS_MB} MB": peak_mb < TARGET_RSS_MB,
        f"CPU < {TARGET_CORES:g} core": expbot_cores(lead) < TARGET_CORES,
        f"writes <= {TARGET_WRITES}/lifecycle": writes_per_lifecycle(lead)[1] <= TARGET_WRITES,
        "all succeeded": progress.all_succeeded_at is not None,
        "all running at once": progress.all_running_at is not None,
    }


def print_report(result: ScaleResult) -> int:
    """Print the whole report (and the profile, if one was taken); 0 if every target was met, else 1."""
    print_states(result)
    print_resources(result)
    print_work(result.lead)
    ok = targets(result)
    print("targets: " + "  ".join(f"{name}: {'met' if good else 'MISSED'}" for name, good in ok.items()))
    if result.profile:
        print(f"\nprofile of the lead thread ({result.profile}), top 25 by cumulative time:")
        pstats.Stats(str(result.profile)).sort_stats("cumulative").print_stats(25)
    return 0 if all(ok.values()) else 1
