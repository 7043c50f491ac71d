"""Idle-GPU policy: when a running experiment's GPUs count as idle, and what to do about it.

Pure functions over utilisation samples; the job (core.idle_job) fetches the samples, keeps the
state and acts on the decision. A sample covers one `sample_window` ending at `Sample.at` and
carries the highest utilisation seen in it, so one busy moment makes the whole window busy.

Two verdicts come from the same samples. *Idle* (assess): every GPU idle for `idle_for`; the owner
is asked Keep or Stop. *Stuck* (assess_hang): every GPU fell from busy to idle and stayed idle for
`hang_timeout` while the attempt reported no progress since: a hung job (e.g. in an NCCL
collective), which expbot kills and restarts as infrastructure without asking.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from core.durations import format_duration


class IdleConfig(BaseModel):
    """Every idle threshold (DESIGN.md "Cost, budgets, idle"); all configurable."""

    model_config = ConfigDict(frozen=True)

    sample_window: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    idle_threshold_percent: float = Field(default=1.0, ge=0.0, le=100.0)  # a window is idle when its max < this
    idle_for: timedelta = timedelta(minutes=30)
    warm_up: timedelta = timedelta(minutes=15)  # after an attempt starts: loading data is not idling
    grace: timedelta = timedelta(minutes=30)  # between the warning and the auto-stop
    auto_stop: bool = True
    keep_options: tuple[timedelta, ...] = (timedelta(hours=2), timedelta(hours=24))
    # How often the job runs: each run adds at most this much idle time to idle_gpu_seconds, so a
    # job that did not run (serve was down) undercounts rather than inventing waste.
    check_every: timedelta = Field(default=timedelta(minutes=1), gt=timedelta(0))
    # How far back to look for the start of an idle run when none is known yet.
    lookback: timedelta = timedelta(hours=1)
    # GPUs that fell from busy to idle this long, with no progress since: stuck. 0 turns it off.
    hang_timeout: timedelta = Field(default=timedelta(minutes=10), ge=timedelta(0))

    def fetch_since(
        self, attempt_started_at: datetime, idle_since: datetime | None, now: datetime, *, hangs: bool = False
    ) -> datetime:
        """Where the job's sample query should start (whole seconds, so windows line up between runs).

        With `hangs`, it reaches back past the warm-up and far enough to see the busy window before
        an idle run of `hang_timeout`, in whole windows from `idle_since` so the grid stays put.
        """
        if not (hangs and self.hang_timeout):
            since = max(attempt_started_at + self.warm_up, idle_since or now - max(self.lookback, self.idle_for * 2))
        elif idle_since is None:
            reach = max(self.lookback, self.idle_for * 2, self.hang_timeout + 2 * self.sample_window)
            since = max(attempt_started_at, now - reach)
        else:
            window = self.sample_window
            back = math.ceil((idle_since - (now - self.hang_timeout - window)) / window)
            back = max(0, min(back, math.ceil((idle_since - attempt_started_at) / window)))
            since = idle_since - back * window
        return since.replace(microsecond=0)


@dataclass(frozen=True)
class Sample:
    """The highest utilisation (0-100 %) of one GPU in the sample window ending at `at`."""

    gpu: str
    at: datetime
    max_util: float


@dataclass(frozen=True)
class IdleState:
    """Idle bookkeeping of one experiment (mirrors the idle_state row)."""

    idle_since: datetime | None = None  # start of the current all-GPUs-idle run
    warned_at: datetime | None = None  # when the owner was warned about this run
    snoozed_until: datetime | None = None  # Keep: no warning before this
    idle_gpu_seconds: float = 0.0  # GPU-seconds spent idle so far (the digest's "GPU-hours wasted")


class IdleAction(StrEnum):
    NONE = "none"
    WARN = "warn"  # tell the owner, offer Keep / Stop
    STOP = "stop"  # warned, no answer within the grace, auto-stop on
    RESET = "reset"  # activity came back: the idle run (and its warning) is over
    STUCK = "stuck"  # busy, then idle with no progress for hang_timeout: the supervisor restarts it


@dataclass(frozen=True)
class IdleDecision:
    """What assess() concluded: the state to save and the action to take."""

    state: IdleState
    action: IdleAction
    idle_for: timedelta = timedelta(0)  # how long every GPU has been idle (0 when not idle)

    @property
    def idle_minutes(self) -> int:
        """Whole minutes idle, for messages."""
        return int(self.idle_for.total_seconds() // 60)


def assess(
    experiment_started_at: datetime,
    samples_by_gpu: dict[str, list[Sample]],
    state: IdleState,
    now: datetime,
    config: IdleConfig,
    expected_gpus: int | None = None,
) -> IdleDecision:
    """Decide NONE / WARN / STOP / RESET for one running attempt from its GPUs' samples."""
    warm_up_end = experiment_started_at + config.warm_up
    had_run = state.idle_since is not None or state.warned_at is not None
    if now < warm_up_end:
        # A new attempt warms up: whatever idle run an earlier attempt had is over.
        return _reset(state) if had_run else IdleDecision(state, IdleAction.NONE)
    run_start = _all_idle_since(samples_by_gpu, now, config, expected_gpus)
    if run_start is None:
        return _reset(state) if had_run else IdleDecision(state, IdleAction.NONE)
    run_start = max(run_start, warm_up_end)  # idleness counts only after the warm-up
    reset = False
    if state.idle_since is not None and run_start <= state.idle_since + _tolerance(config):
        idle_since = state.idle_since  # the same run goes on
    else:
        # No run yet, or this one began after the stored one: something was busy in between.
        reset = had_run
        state = replace(state, warned_at=None)
        idle_since = run_start
    gpus = expected_gpus if expected_gpus is not None else len(samples_by_gpu)
    idle_for = max(timedelta(0), now - idle_since)
    # A run seen for the first time counts whole; a known one gains at most one job interval.
    counted = (idle_for if idle_since != state.idle_since else min(config.check_every, idle_for)).total_seconds() * gpus
    state = replace(state, idle_since=idle_since, idle_gpu_seconds=state.idle_gpu_seconds + counted)
    quiet = IdleDecision(state, IdleAction.RESET if reset else IdleAction.NONE, idle_for)
    if idle_for < config.idle_for:
        return quiet
    if state.snoozed_until is not None and now < state.snoozed_until:
        return quiet  # the owner said Keep
    if state.warned_at is None:
        return IdleDecision(replace(state, warned_at=now), IdleAction.WARN, idle_for)
    if config.auto_stop and now >= state.warned_at + config.grace:
        return IdleDecision(state, IdleAction.STOP, idle_for)
    return IdleDecision(state, IdleAction.NONE, idle_for)


def kept(state: IdleState, until: datetime) -> IdleState:
    """The state after a Keep: no warning before `until`; the current warning is answered."""
    return replace(state, snoozed_until=until, warned_at=None)


def _reset(state: IdleState) -> IdleDecision:
    return IdleDecision(replace(state, idle_since=None, warned_at=None), IdleAction.RESET)


def _tolerance(config: IdleConfig) -> timedelta:
    # Prometheus answers in milliseconds; windows that line up may differ by that rounding.
    return min(timedelta(seconds=1), config.sample_window / 4)


def _all_idle_since(
    samples_by_gpu: dict[str, list[Sample]], now: datetime, config: IdleConfig, expected_gpus: int | None
) -> datetime | None:
    """Since when every GPU has had only idle samples, or None if some GPU is busy or unknown."""
    if not samples_by_gpu or (expected_gpus is not None and len(samples_by_gpu) < expected_gpus):
        return None  # a GPU with no samples is unknown, and unknown is not idle
    starts = [_idle_run_start(samples, now, config) for samples in samples_by_gpu.values()]
    if any(start is None for start in starts):
        return None
    return max(start for start in starts if start is not None)


def _idle_run_start(samples: list[Sample], now: datetime, config: IdleConfig) -> datetime | None:
    """Start of the trailing run of idle, gap-free samples of one GPU, or None."""
    return _idle_run(samples, now, config)[0]


def _idle_run(samples: list[Sample], now: datetime, config: IdleConfig) -> tuple[datetime | None, Sample | None]:
    """Start of the trailing idle, gap-free run of one GPU's samples, and the busy sample right before it.

    (None, None) when the newest sample is busy or too old; the sample before is None when the run
    reaches back to a gap or to the first sample: what came before it is unknown.
    """
    window = config.sample_window
    ordered = sorted(samples, key=lambda s: s.at)
    if not ordered or ordered[-1].at < now - 2 * window:
        return None, None  # no recent sample: the exporter or the GPU went quiet, which says nothing
    start: datetime | None = None
    newer: Sample | None = None
    for sample in reversed(ordered):
        if newer is not None and newer.at - sample.at > window * 1.5:
            return start, None  # a missing window: what happened in it is unknown
        if sample.max_util >= config.idle_threshold_percent:
            return start, sample
        start, newer = sample.at - window, sample
    return start, None


@dataclass(frozen=True)
class Hang:
    """Why a running attempt counts as stuck: the evidence for its thread."""

    idle_since: datetime  # when the last of its GPUs went idle
    idle_for: timedelta
    busy_percent: float  # the highest utilisation in the window before they went idle
    last_progress: datetime | None  # the attempt's newest checkpoint or heartbeat, if any

    def reason(self) -> str:
        """E.g. "stuck: GPUs idle for 10m after running at 95%; last progress 12:04 UTC"."""
        if self.last_progress is None:
            progress = "no progress reported"
        elif self.idle_since - self.last_progress >= timedelta(hours=20):
            progress = f"last progress {self.last_progress:%Y-%m-%d %H:%M} UTC"
        else:
            progress = f"last progress {self.last_progress:%H:%M} UTC"
        return (f"stuck: GPUs idle for {format_duration(self.idle_for)} after running at "
                f"{self.busy_percent:.0f}%; {progress}")


def assess_hang(
    samples_by_gpu: dict[str, list[Sample]],
    last_progress: datetime | None,
    now: datetime,
    config: IdleConfig,
    expected_gpus: int | None = None,
) -> Hang | None:
    """A Hang when every GPU fell from busy to idle `hang_timeout` ago or more with no progress since.

    GPUs that never got busy (or whose earlier windows are unknown) are not stuck, and an attempt
    that reports progress while idle is not either: both stay with the idle warning.
    """
    if not config.hang_timeout or not samples_by_gpu:
        return None
    if expected_gpus is not None and len(samples_by_gpu) < expected_gpus:
        return None  # a GPU with no samples is unknown
    starts, peaks = [], []
    for samples in samples_by_gpu.values():
        start, busy = _idle_run(samples, now, config)
        if start is None or busy is None:
            return None
        starts.append(start)
        peaks.append(busy.max_util)
    idle_since = max(starts)
    idle_for = now - idle_since
    if idle_for < config.hang_timeout:
        return None
    if last_progress is not None and last_progress >= idle_since:
        return None  # it works without its GPUs (evaluation, saving): the idle warning's business
    return Hang(idle_since, idle_for, max(peaks), last_progress)
