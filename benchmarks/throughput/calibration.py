"""Calibration (issue 13, item 4): one scenario, run by the simulated expbot arm and by the real expbot.

The scenario is the replay's own week (replay.generate, same seed) cut to its first N experiments,
with 16-GPU runs clipped to 8 (the test cluster's pods fit on one node; the simulation spans nodes),
and node incidents at `failure_scale` times the published rate so that ~100 experiments meet every
kind of failure within the horizon. Both sides run exactly this: the simulation in simulated time,
the real expbot on the KWOK control plane with time compressed (kwok_world.py).

The figures compared are counts, which compression does not scale: how expbot decided each scripted
failure, restarts per failure cause, give-ups (false ones too), successes, the share of
infrastructure-hit experiments finished with nobody stepping in, and human touches. Figures made of
wall time (GPU-hours wasted, time to decide a bug) are shown in simulated hours, but the real run's
include the control plane's own latencies times the compression factor, so they are not held to 10%.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from benchmarks.throughput.expbot_arm import ExpbotArm
from benchmarks.throughput.ledger import INFRA_KINDS, Ledger, Run
from benchmarks.throughput.replay import GPUS_PER_NODE, SpotTrace, Week, generate
from benchmarks.throughput.sim import World
from core.model import Experiment, State

HOURS = 3600.0
# The failure kinds a scripted failure can have, in table order (the pod's `kind` in sim.Pod).
KINDS = ("bug", "oom", "transient", "gpu-fault", "network", "drain", "preempt", "hang-watchdog", "hang-silent",
         "deadline")
USER_KINDS = frozenset({"bug", "oom", "transient"})
# Shown besides: attempts expbot (a stall, a stop) or a person ended, which no script asked for.
SHOWN = (*KINDS, "killed")


@dataclasses.dataclass(frozen=True)
class Scenario:
    seed: int
    experiments: int
    horizon: float  # simulated seconds
    failure_scale: float

    def week(self, spot: SpotTrace | None = None) -> Week:
        """The seed's week cut to the first `experiments` arrivals, every run on at most one node."""
        week = generate(self.seed, spot or SpotTrace(), failure_scale=self.failure_scale)
        items = [dataclasses.replace(i, gpus=min(i.gpus, GPUS_PER_NODE)) for i in week.items[:self.experiments]]
        return dataclasses.replace(week, items=items, incidents=[i for i in week.incidents if i.at < self.horizon])


FULL = Scenario(seed=1, experiments=100, horizon=24 * HOURS, failure_scale=200.0)
QUICK = Scenario(seed=12, experiments=8, horizon=3 * HOURS, failure_scale=200.0)


def simulate(scenario: Scenario, spot: SpotTrace | None = None) -> tuple[Ledger, dict[str, Run], dict[str, Experiment]]:
    """The simulated expbot arm on the scenario: its ledger, runs and expbot's experiments by id."""
    arms: list[ExpbotArm] = []

    def factory(world: World) -> ExpbotArm:
        arms.append(ExpbotArm(world))
        return arms[0]

    ledger = World(scenario.week(spot), factory, scenario.horizon).run()
    return ledger, arms[0].runs, dict(arms[0].db.experiments)


def figures(ledger: Ledger, runs: dict[str, Run], experiments: dict[str, Experiment]) -> dict[str, Any]:
    """The figures both sides are compared on (counts), plus the wall-time ones (simulated hours)."""
    out: dict[str, Any] = dict(ledger.figures())
    decided: dict[str, Counter] = {k: Counter() for k in SHOWN}
    for experiment_id, run in runs.items():
        experiment = experiments.get(experiment_id)
        if experiment is None:
            continue
        for pod in run.pods:
            if pod.state != "ended" or pod.kind not in decided or pod.attempt > len(experiment.attempts):
                continue
            attempt = experiment.attempts[pod.attempt - 1]
            if pod.attempt < len(experiment.attempts):
                decision = "restart"
            elif experiment.state == State.FAILED:
                decision = "give-up"
            else:
                continue  # not decided within the horizon
            decided[pod.kind][decision] += 1
            decided[pod.kind][f"class:{attempt.failure_class}"] += 1
    out["decided"] = decided
    failures = {k: sum(c["restart"] + c["give-up"] for c in [decided[k]]) for k in KINDS}
    user = sum(failures[k] for k in USER_KINDS)
    infra = sum(failures[k] for k in KINDS if k in INFRA_KINDS)
    restarts = {k: decided[k]["restart"] for k in KINDS}
    out["scripted_failures"] = sum(failures.values())
    out["infra_failures"], out["user_failures"] = infra, user
    out["infra_restart_share"] = _share(sum(restarts[k] for k in KINDS if k in INFRA_KINDS), infra)
    out["user_restart_share"] = _share(sum(restarts[k] for k in USER_KINDS), user)
    # expbot's own counters: restarts spent per budget, summed over experiments.
    mine = [e for e in experiments.values() if e.id in runs]
    out["infra_restarts"] = sum(e.infra_restarts for e in mine)
    out["user_restarts"] = sum(e.user_restarts for e in mine)
    out["free_restarts"] = sum(e.free_restarts for e in mine)
    out["attempts"] = sum(len(e.attempts) for e in mine)
    out["give_ups"] = ledger.give_ups
    out["launches"] = len(runs)
    return out


def _share(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


# (key, title, format, held to the 10% agreement)
COMPARED = (
    ("successes", "experiments succeeded", "{:.0f}", True),
    ("launches", "launches (first + by a person)", "{:.0f}", True),
    ("scripted_failures", "scripted failures decided", "{:.0f}", True),
    ("infra_restart_share", "infra failures restarted", "{:.1%}", True),
    ("user_restart_share", "user failures restarted", "{:.1%}", True),
    ("infra_restarts", "restarts on --max-preemptions", "{:.0f}", True),
    ("user_restarts", "restarts on --max-restarts", "{:.0f}", True),
    ("free_restarts", "restarts on retry exit codes", "{:.0f}", True),
    ("give_ups", "give-ups", "{:.0f}", True),
    ("false_give_ups", "false give-ups", "{:.0f}", True),
    ("infra_hit", "infra-hit experiments", "{:.0f}", True),
    ("infra_finished_share", "infra-hit finished, no person", "{:.1%}", True),
    ("touches", "human touches", "{:.0f}", True),
    ("infra_touches", "human touches (infra)", "{:.0f}", True),
    ("wasted_gpu_h", "GPU-h wasted (sim h)", "{:.1f}", False),
    ("bug_decision_min", "bug decided in (sim min)", "{:.1f}", False),
)
AGREEMENT = 0.10


def agrees(simulated: float, real: float, tolerance: float = AGREEMENT) -> bool:
    """Within `tolerance` of the simulated figure (two zeros agree, as do two n/a)."""
    if math.isnan(simulated) or math.isnan(real):
        return math.isnan(simulated) and math.isnan(real)
    return abs(real - simulated) <= max(tolerance * abs(simulated), 1e-9)


def comparison(simulated: dict[str, Any], real: dict[str, Any]) -> tuple[str, bool]:
    """A table of every compared figure, simulated vs real; whether every held one agrees within 10%."""
    rows = [("figure", "simulated", "real (KWOK)", "agree <= 10%")]
    ok = True
    for key, title, fmt, held in COMPARED:
        s, r = float(simulated[key]), float(real[key])
        good = agrees(s, r)
        ok &= good or not held
        rows.append((title, _fmt(fmt, s), _fmt(fmt, r), ("yes" if good else "NO") if held else "(scaled: shown)"))
    rows.append(("", "", "", ""))
    rows.append(("decisions per scripted failure", "restart/give-up", "restart/give-up", ""))
    for kind in SHOWN:
        a, b = simulated["decided"][kind], real["decided"][kind]
        if a or b:
            rows.append((f"  {kind}", f"{a['restart']}/{a['give-up']} {_classes(a)}",
                         f"{b['restart']}/{b['give-up']} {_classes(b)}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines), ok


def _classes(counter: Counter) -> str:
    found = sorted((k.split(":", 1)[1], n) for k, n in counter.items() if k.startswith("class:"))
    return "(" + ", ".join(f"{c} {n}" for c, n in found) + ")"


def _fmt(fmt: str, value: float) -> str:
    return "n/a" if math.isnan(value) else fmt.format(value)


def describe(ledger_items: Iterable[Any]) -> str:
    """A one-line census of the scenario's experiments."""
    items = list(ledger_items)
    return (f"{len(items)} experiments: {sum(i.spot for i in items)} spot, {sum(i.bug is not None for i in items)} "
            f"with a bug, {sum(i.transient_at is not None for i in items)} with a transient error, "
            f"{sum(i.self_resume for i in items)} resuming from their own files")
