"""The failure replay: a seeded generator of one week of a research cluster.

Every figure drawn from published data names its source (../shared/data/README.md holds them);
every other number is an assumption and says so. The same seed gives the same week to every arm:
the same experiments, the same node incidents at the same times, the same spot trace offsets.
"""
from __future__ import annotations

import csv
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

DAY = 86400.0
WEEK = 7 * DAY
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SPOT_CSV = DATA / "spot-v100-preemption-periods.csv"

# --- the cluster (assumption: a team's cluster; 8-GPU nodes as in the KWOK test cluster) -----------
NODES, GPUS_PER_NODE = 16, 8
GPU_PRICE = 2.50  # USD per GPU-hour: the a100 price the README ships (rounded on-demand, mid-2025)
LOAD = 0.9  # offered GPU-hours / capacity (assumption: research clusters run with a queue)

# --- experiments -------------------------------------------------------------------------------
# Runtime: lognormal fitted to Philly (Microsoft) in the Acme trace paper's summary (NSDI 2024):
# median 874 s and mean 18,006 s give mu = ln 874 and sigma = sqrt(2 ln(18006/874)) = 2.46.
RUNTIME_MEDIAN_S, RUNTIME_MEAN_S = 874.0, 18006.0
RUNTIME_SIGMA = math.sqrt(2 * math.log(RUNTIME_MEAN_S / RUNTIME_MEDIAN_S))
RUNTIME_CLIP_S = (120.0, 3 * DAY)  # assumption: nothing shorter than 2 min or longer than 3 days
# GPUs per experiment: assumption (the shared data has no GPU-count histogram).
GPU_COUNTS = ((1, 0.50), (2, 0.10), (4, 0.15), (8, 0.20), (16, 0.05))
SPOT_SHARE_OF_1GPU = 0.4  # assumption: 1-GPU runs go to spot V100s this often
CHECKPOINT_MINUTES = (15, 30, 60)  # the factor; 15 min is Young/Daly for 1-min ckpts, 2 h MTBF
SELF_RESUME_SHARE = 0.5  # the factor: the script resumes from its own files this often
# User errors. Acme (NSDI 2024): failed GPU jobs are 15.5-42.9 % by cluster; the split into
# deterministic bugs and transient errors is an assumption, as are the delays.
BUG_SHARE, OOM_SHARE_OF_BUGS = 0.25, 0.2  # OOM: "CUDA out of memory", expbot's default give-up pattern
BUG_AFTER_S = (60.0, 300.0)  # a deterministic bug fails within minutes, every attempt
TRANSIENT_SHARE = 0.05  # one transient error (I/O hiccup) somewhere in the run
RETRYABLE_EXIT = 75  # EX_TEMPFAIL: half the transient errors exit with it (the script's own retry code)

# --- node incidents -------------------------------------------------------------------------------
# Kokolis et al. (HPCA 2025): 2.34 and 6.50 node failures per 1,000 node-days on Meta's two
# research clusters; seeds alternate between them.
NODE_FAILURES_PER_1000_NODE_DAYS = (2.34, 6.50)
# What an incident is: Llama 3 (Meta 2024) Table 5 counts of unexpected interruptions by cause,
# software bugs left out (they are user errors here). Each cause, with the evidence its process leaves:
# an Xid or CUDA line (the replay assumes the node's Xid line reaches the termination message, which
# is optimistic: it is a kernel message), an NCCL line, or a drain (host maintenance: an eviction).
INCIDENT_CAUSES = (
    ("faulty-gpu", 148, "gpu", "NVRM: Xid (PCI:0000:3b:00): 79, pid=4242, GPU has fallen off the bus."),
    ("gpu-hbm3", 72, "gpu", "RuntimeError: CUDA error: uncorrectable ECC error encountered"),
    ("network", 35, "node", "NCCL WARN NET/IB : Got completion from peer 10.0.3.7<51234> with error 12, "
                            "opcode 0, len 0, vendor err 129"),
    ("host-maintenance", 32, "drain", ""),
    ("gpu-sram", 19, "gpu", "NVRM: Xid (PCI:0000:3b:00): 94, pid=4242, Contained: SM (0x1). RST: No"),
    # Xid 119 (GSP RPC timeout) is not in expbot's catalog: an honest gap, classified as the user's.
    ("gpu-gsp", 17, "gpu", "NVRM: Xid (PCI:0000:3b:00): 119, pid=4242, Timeout after 6s of waiting for RPC "
                           "response from GPU0 GSP!"),
)
# ByteRobust (2025): job hangs are 9.9 % of incidents; the issue splits them: half end after the
# NCCL watchdog (PyTorch's default NCCL timeout: 10 min), half stay alive and silent.
HANG_SHARE = 0.10
WATCHDOG_S = 600.0
WATCHDOG_LINE = ("[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=88123, "
                 "OpType=ALLREDUCE) ran for 600000 milliseconds before timing out.")


@dataclass
class Item:
    """One experiment a researcher wants done (one or more launches by a person)."""

    index: int
    arrival: float
    gpus: int
    length: float  # seconds of training to finish
    checkpoint_every: float  # seconds of training between checkpoints
    self_resume: bool  # the script resumes from its own newest checkpoint
    spot: bool
    bug: str | None  # deterministic bug ("bug" or "oom") in the first launch; a person fixes it
    bug_after: float
    transient_at: float | None  # training progress at which one transient error happens
    transient_exit: int
    spot_zone: int
    spot_offset: float
    human_rng_seed: int


@dataclass(frozen=True)
class Incident:
    """Something going wrong on one node at one time."""

    at: float
    node: int
    cause: str
    scope: str  # "gpu": the process on one GPU; "node": every process there; "drain": evicted
    evidence: str
    gpu: int  # which GPU, for scope "gpu"
    hang: str | None  # None, "watchdog" or "silent"


@dataclass
class Week:
    seed: int
    items: list[Item]
    incidents: list[Incident]
    failure_rate: float  # node failures per 1,000 node-days
    spot: "SpotTrace" = field(repr=False, default=None)  # type: ignore[assignment]


class SpotTrace:
    """The 1-node spot V100 traces (skypilot-org/spot-traces, via ../shared/data): up/down periods per zone."""

    def __init__(self, path: Path = SPOT_CSV) -> None:
        zones: dict[str, list[tuple[float, float, bool]]] = {}
        with path.open() as f:
            for row in csv.DictReader(f):
                if row["trace"].startswith("1-node/"):
                    start = float(row["start_seconds"])
                    zones.setdefault(row["zone"], []).append((start, start + float(row["seconds"]),
                                                              int(row["instances_up"]) > 0))
        self.zones = [sorted(periods) for _, periods in sorted(zones.items())]
        self.starts = [[p[0] for p in periods] for periods in self.zones]
        self.lengths = [periods[-1][1] for periods in self.zones]

    def up_window(self, zone: int, at: float) -> tuple[float, float]:
        """(when an instance is next up, when it is preempted), in trace seconds >= `at` (wrapping around)."""
        length, periods, starts = self.lengths[zone], self.zones[zone], self.starts[zone]
        laps, t = divmod(at, length)
        i = max(0, bisect_right(starts, t) - 1)
        for step in range(2 * len(periods)):
            start, end, up = periods[(i + step) % len(periods)]
            offset = (laps + (i + step) // len(periods)) * length
            if up and end + offset > at:
                return max(at, start + offset), end + offset
        raise ValueError("a spot zone that is never up")


def _weighted(rng: random.Random, pairs) -> object:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _runtime(rng: random.Random) -> float:
    low, high = RUNTIME_CLIP_S
    return min(high, max(low, rng.lognormvariate(math.log(RUNTIME_MEDIAN_S), RUNTIME_SIGMA)))


def _item(rng: random.Random, index: int, arrival: float, zones: int, trace_length: float) -> Item:
    gpus = int(_weighted(rng, GPU_COUNTS))  # type: ignore[arg-type]
    length = _runtime(rng)
    bug = None
    if rng.random() < BUG_SHARE:
        bug = "oom" if rng.random() < OOM_SHARE_OF_BUGS else "bug"
    transient = rng.uniform(0.05, 0.95) * length if rng.random() < TRANSIENT_SHARE else None
    return Item(
        index=index, arrival=arrival, gpus=gpus, length=length,
        checkpoint_every=60.0 * rng.choice(CHECKPOINT_MINUTES), self_resume=rng.random() < SELF_RESUME_SHARE,
        spot=gpus == 1 and rng.random() < SPOT_SHARE_OF_1GPU, bug=bug, bug_after=rng.uniform(*BUG_AFTER_S),
        transient_at=transient, transient_exit=RETRYABLE_EXIT if rng.random() < 0.5 else 1,
        spot_zone=rng.randrange(zones), spot_offset=rng.uniform(0, trace_length),
        human_rng_seed=rng.getrandbits(32),
    )


def mean_gpu_seconds(rng: random.Random, samples: int = 20000) -> float:
    """E[GPUs x runtime] of one experiment, estimated by sampling the distributions above."""
    return sum(int(_weighted(rng, GPU_COUNTS)) * _runtime(rng) for _ in range(samples)) / samples  # type: ignore[arg-type]


_MEAN_GPU_SECONDS = mean_gpu_seconds(random.Random(0))


def _incidents(rng: random.Random, rate: float, horizon: float) -> list[Incident]:
    per_node_second = rate / 1000.0 / DAY
    found: list[Incident] = []
    for node in range(NODES):
        t = rng.expovariate(per_node_second)
        while t < horizon:
            cause, _, scope, evidence = _weighted(rng, [(c, c[1]) for c in INCIDENT_CAUSES])  # type: ignore[misc]
            hang = None
            if rng.random() < HANG_SHARE:
                hang, scope = ("watchdog" if rng.random() < 0.5 else "silent"), "node"
            found.append(Incident(t, node, cause, scope, evidence, rng.randrange(GPUS_PER_NODE), hang))
            t += rng.expovariate(per_node_second)
    return sorted(found, key=lambda i: i.at)


def generate(seed: int, spot: SpotTrace, days: float = 7.0, failure_scale: float = 1.0,
             horizon_days: float = 14.0) -> Week:
    """The week of `seed`: experiments arriving for `days`, node incidents until the horizon."""
    rng = random.Random(seed)
    rate = NODE_FAILURES_PER_1000_NODE_DAYS[seed % 2] * failure_scale
    # Arrivals offer LOAD x the on-demand capacity (spot runs, 1 GPU each, are counted in it too).
    per_second = LOAD * NODES * GPUS_PER_NODE / _MEAN_GPU_SECONDS
    items: list[Item] = []
    t = rng.expovariate(per_second)
    while t < days * DAY:
        items.append(_item(rng, len(items), t, len(spot.zones), min(spot.lengths)))
        t += rng.expovariate(per_second)
    return Week(seed, items, _incidents(rng, rate, horizon_days * DAY), rate, spot)


def max_runtime_for(item: Item) -> float:
    """The limit a person sets (--max-runtime, activeDeadlineSeconds): twice the expected length, whole hours."""
    # Assumption: people know roughly how long their run takes and allow twice that.
    return 3600.0 * max(1, math.ceil(2 * item.length / 3600))
