"""What happened to every experiment under one arm, and the figures the report is made of."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmarks.throughput.replay import GPU_PRICE, WEEK, Item, Week

if TYPE_CHECKING:
    from benchmarks.throughput.sim import Pod

# Failures the cluster, not the code, caused (hangs included: the issue counts them as incidents).
INFRA_KINDS = frozenset({"gpu-fault", "network", "drain", "preempt", "hang-watchdog", "hang-silent"})


@dataclass
class Track:
    """One experiment across every launch a person made of it."""

    item: Item
    runs: list["Run"] = field(default_factory=list)
    ckpt: float = 0.0  # newest checkpoint's training progress
    transient_done: bool = False
    succeeded_at: float | None = None
    infra_hit: bool = False  # an infrastructure failure hit it during the week
    touches: int = 0
    infra_touches: int = 0
    last_end: tuple[float, float, str] | None = None  # (progress reached, started from, kind) of the last failed pod


@dataclass(eq=False)
class Run:
    """One launch of an experiment by a person (the first, or a relaunch after a give-up)."""

    track: Track
    number: int
    launched: float
    bug: str | None
    start_progress: float
    pods: list["Pod"] = field(default_factory=list)
    outcome: str | None = None  # "succeeded" or "gave-up"
    first_bug_end: float | None = None
    arm: dict[str, Any] = field(default_factory=dict)  # the arm's own bookkeeping

    @property
    def item(self) -> Item:
        return self.track.item


class Ledger:
    """GPU time, waste, give-ups and human touches, counted inside the week."""

    def __init__(self, week: Week) -> None:
        self.tracks = {item.index: Track(item) for item in week.items}
        self.gpu_seconds = 0.0
        self.lost = self.stuck = self.futile = 0.0  # GPU-seconds
        self.false_give_ups = 0
        self.give_ups = 0
        self.bug_decisions: list[float] = []  # seconds from a bug's first failure to the give-up
        self.infra_redo: list[tuple[float, float]] = []  # (training seconds redone, checkpoint interval) per infra failure

    def new_run(self, item: Item, t: float, bug: str | None, start_progress: float) -> Run:
        """A person launched the experiment (again)."""
        track = self.tracks[item.index]
        run = Run(track, len(track.runs) + 1, t, bug, start_progress)
        track.runs.append(run)
        return run

    @staticmethod
    def newest_checkpoint(track: Track, t: float) -> float:
        """Training progress of the newest checkpoint at time t (live pods write theirs as they go)."""
        every = track.item.checkpoint_every
        for run in track.runs:
            if run.pods and run.pods[-1].state == "running":
                track.ckpt = max(track.ckpt, math.floor(run.pods[-1].progress(t) / every) * every)
        return track.ckpt

    def pod_started(self, pod: "Pod", t: float) -> None:
        """Book the progress the previous failed pod made that this one must redo."""
        track = pod.run.track
        if track.last_end is not None:
            reached, started_from, kind = track.last_end
            redo = max(0.0, reached - max(started_from, pod.p0))
            if t <= WEEK:
                self.lost += redo * pod.gpus
                if kind in INFRA_KINDS:
                    self.infra_redo.append((redo, track.item.checkpoint_every))
            track.last_end = None

    def pod_ended(self, pod: "Pod", t: float) -> None:
        """Book GPU time, stuck time, futile retries and checkpoints of a pod that ended."""
        run, track = pod.run, pod.run.track
        if pod.started is None:
            return
        held = max(0.0, min(t, WEEK) - pod.started)
        self.gpu_seconds += held * pod.gpus
        if pod.hang_at is not None and pod.hang_at <= WEEK:
            self.stuck += (min(t, WEEK) - pod.hang_at) * pod.gpus
        if pod.kind in ("bug", "oom"):
            if run.first_bug_end is None:
                run.first_bug_end = t
            elif t <= WEEK:
                self.futile += held * pod.gpus
        if pod.kind == "transient":
            track.transient_done = True
        if pod.kind == "success":
            return
        reached = pod.progress(t)
        every = track.item.checkpoint_every
        track.ckpt = max(track.ckpt, math.floor(reached / every) * every)
        track.last_end = (reached, pod.p0, pod.kind)
        if pod.kind in INFRA_KINDS and t <= WEEK:
            track.infra_hit = True

    def run_succeeded(self, run: Run, t: float) -> None:
        run.outcome = "succeeded"
        run.track.succeeded_at = t

    def run_gave_up(self, run: Run, t: float, cause: str) -> None:
        run.outcome = "gave-up"
        if t > WEEK:
            return
        self.give_ups += 1
        if run.bug is None:
            self.false_give_ups += 1
        elif run.first_bug_end is not None and run.first_bug_end <= WEEK:
            self.bug_decisions.append(t - run.first_bug_end)

    def touch(self, track: Track, t: float, infra: bool) -> None:
        """A person had to act on the experiment."""
        if t <= WEEK:
            track.touches += 1
            track.infra_touches += int(infra)

    def close(self, horizon: float) -> None:
        """Nothing more happens after the horizon."""

    def figures(self) -> dict[str, float]:
        """The per-week figures of this arm on this seed."""
        tracks = list(self.tracks.values())
        hit = [tr for tr in tracks if tr.infra_hit and tr.item.bug is None]
        # Finished by the arm itself: its first launch succeeded and nobody had to step in.
        own = [tr for tr in hit if tr.runs[0].outcome == "succeeded" and tr.touches == 0]
        successes = sum(1 for tr in tracks if tr.succeeded_at is not None and tr.succeeded_at <= WEEK)
        wasted_h = (self.lost + self.stuck + self.futile) / 3600
        cost = self.gpu_seconds / 3600 * GPU_PRICE
        return {
            "successes": successes,
            "infra_hit": len(hit),
            "infra_finished_share": len(own) / len(hit) if hit else math.nan,
            "wasted_gpu_h": wasted_h, "lost_gpu_h": self.lost / 3600, "stuck_gpu_h": self.stuck / 3600,
            "futile_gpu_h": self.futile / 3600, "wasted_usd": wasted_h * GPU_PRICE,
            "usd_per_success": cost / successes if successes else math.nan,
            "false_give_ups": self.false_give_ups,
            "bug_decision_min": _median(self.bug_decisions) / 60,
            "touches": sum(tr.touches for tr in tracks),
            "infra_touches": sum(tr.infra_touches for tr in tracks),
            # The goal: at most the checkpoint interval + 30 s of work lost per failure.
            "redo_within_goal": (sum(1 for redo, every in self.infra_redo if redo <= every + 30) / len(self.infra_redo)
                                 if self.infra_redo else math.nan),
        }


def _median(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
