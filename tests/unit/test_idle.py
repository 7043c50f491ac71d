"""The idle policy: warm-up, every GPU idle, unknown is not idle, warn once, stop after the grace, Keep."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from core.idle import Hang, IdleAction, IdleConfig, IdleState, Sample, assess, assess_hang, kept

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)  # the attempt started running
W = timedelta(minutes=5)
CONFIG = IdleConfig()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def series(gpu: str, start: float, end: float, util: float | dict[float, float]) -> list[Sample]:
    """One sample every 5 min with window ends in [start, end] minutes; util constant or per window end."""
    samples = []
    m = start
    while m <= end:
        value = util.get(m, 0.0) if isinstance(util, dict) else util
        samples.append(Sample(gpu, at(m), value))
        m += 5
    return samples


def idle(*gpus: str, start: float = 0, end: float) -> dict[str, list[Sample]]:
    return {gpu: series(gpu, start, end, 0.0) for gpu in gpus}


def run(minutes: list[float], samples_at, state: IdleState = IdleState(), config: IdleConfig = CONFIG,
        expected_gpus: int | None = None):
    """Assess at each minute (samples_at(minute) gives the samples); returns the decisions."""
    decisions = []
    for m in minutes:
        decision = assess(T0, samples_at(m), state, at(m), config, expected_gpus)
        state = decision.state
        decisions.append(decision)
    return decisions


def test_nothing_happens_during_the_warm_up_even_if_idle():
    d = assess(T0, idle("0", end=14), IdleState(), at(14), CONFIG)
    assert d.action == IdleAction.NONE and d.state == IdleState()


def test_idle_counts_from_the_end_of_the_warm_up():
    # Idle since the start: the run counts from 15 min, so 30 min of idling are reached at 45.
    d = assess(T0, idle("0", end=44), IdleState(), at(44.5), CONFIG)
    assert d.action == IdleAction.NONE and d.state.idle_since == at(15)
    d = assess(T0, idle("0", end=45), d.state, at(45), CONFIG)
    assert d.action == IdleAction.WARN and d.idle_minutes == 30 and d.state.warned_at == at(45)


def test_all_gpus_must_be_idle_and_one_busy_gpu_is_never_warned():
    busy = lambda m: idle("0", end=m) | {"1": series("1", 0, m, 55.0)}  # noqa: E731
    decisions = run([m for m in range(15, 200, 1)], busy)
    assert all(d.action == IdleAction.NONE for d in decisions)
    assert decisions[-1].state == IdleState()


def test_the_run_starts_when_the_last_gpu_goes_idle():
    samples = lambda m: {"0": series("0", 0, m, 0.0), "1": series("1", 0, m, {m_: 80.0 for m_ in range(41)})}  # noqa: E731
    # GPU 1 was busy in the window ending at 40: it has been idle since 40.
    d = assess(T0, samples(60), IdleState(), at(60), CONFIG)
    assert d.state.idle_since == at(40) and d.action == IdleAction.NONE
    assert assess(T0, samples(70), d.state, at(70), CONFIG).action == IdleAction.WARN


def test_missing_samples_are_not_idle():
    # No data at all, a GPU the metrics do not know, a gap, or data that stopped coming.
    assert assess(T0, {}, IdleState(), at(90), CONFIG).action == IdleAction.NONE
    assert assess(T0, idle("0", end=90), IdleState(), at(90), CONFIG, expected_gpus=2).action == IdleAction.NONE
    gap = {"0": [s for s in series("0", 0, 90, 0.0) if s.at != at(70)]}
    d = assess(T0, gap, IdleState(), at(90), CONFIG)
    assert d.state.idle_since == at(70) and d.action == IdleAction.NONE  # only the run after the gap counts
    stale = assess(T0, idle("0", end=60), IdleState(), at(90), CONFIG)
    assert stale.action == IdleAction.NONE and stale.state.idle_since is None


def test_a_threshold_sample_is_busy():
    d = assess(T0, {"0": series("0", 0, 90, 1.0)}, IdleState(), at(90), CONFIG)
    assert d.state.idle_since is None
    d = assess(T0, {"0": series("0", 0, 90, 0.99)}, IdleState(), at(90), CONFIG)
    assert d.action == IdleAction.WARN


def test_warns_once_then_stops_after_the_grace():
    decisions = run([m for m in range(15, 100)], lambda m: idle("0", "1", end=m))
    actions = [(15 + i, d.action) for i, d in enumerate(decisions) if d.action != IdleAction.NONE]
    assert actions[0] == (45, IdleAction.WARN)
    assert [a for _, a in actions].count(IdleAction.WARN) == 1
    assert actions[1] == (75, IdleAction.STOP)  # 30 min grace after the warning


def test_no_stop_without_auto_stop():
    config = IdleConfig(auto_stop=False)
    decisions = run([m for m in range(15, 200)], lambda m: idle("0", end=m), config=config)
    assert [d.action for d in decisions].count(IdleAction.WARN) == 1
    assert IdleAction.STOP not in [d.action for d in decisions]


def test_keep_snoozes_warnings_until_it_runs_out():
    state = assess(T0, idle("0", end=45), IdleState(), at(45), CONFIG).state
    assert state.warned_at == at(45)
    state = kept(state, at(50) + timedelta(hours=2))
    assert state.warned_at is None
    decisions = run([m for m in range(46, 170)], lambda m: idle("0", end=m), state=state)
    assert all(d.action == IdleAction.NONE for d in decisions)  # no warning, no stop while kept
    after = assess(T0, idle("0", end=170), decisions[-1].state, at(170), CONFIG)
    assert after.action == IdleAction.WARN and after.idle_minutes == 155  # still idle: asked again


def test_activity_resets_the_run_and_the_warning():
    state = assess(T0, idle("0", end=45), IdleState(), at(45), CONFIG).state
    busy = {"0": series("0", 0, 50, {50: 30.0})}
    d = assess(T0, busy, state, at(50), CONFIG)
    assert d.action == IdleAction.RESET and d.state.idle_since is None and d.state.warned_at is None
    # Idle again afterwards: a new run, warned only after another 30 min.
    later = run([m for m in range(51, 85)], lambda m: {"0": series("0", 0, m, {50: 30.0})}, state=d.state)
    assert [x.action for x in later].count(IdleAction.WARN) == 1 and later[-5].state.idle_since == at(50)


def test_busy_between_two_checks_is_seen_as_a_new_run():
    state = IdleState(idle_since=at(20), warned_at=at(50))
    # Fetched since idle_since (as the job does): a busy window at 55 means the stored run ended.
    samples = {"0": series("0", 20, 80, {55: 12.0})}
    d = assess(T0, samples, state, at(80), CONFIG)
    assert d.action == IdleAction.RESET and d.state.idle_since == at(55) and d.state.warned_at is None


def test_a_new_attempt_clears_the_old_run_while_it_warms_up():
    state = IdleState(idle_since=at(20), warned_at=at(50), snoozed_until=at(500), idle_gpu_seconds=10.0)
    d = assess(at(100), {}, state, at(101), CONFIG)
    assert d.action == IdleAction.RESET
    assert d.state == replace(state, idle_since=None, warned_at=None)  # the snooze and the total stay


def test_idle_gpu_seconds_add_up_per_gpu_and_count_only_idle_time():
    decisions = run([m for m in range(15, 61)], lambda m: idle("0", "1", end=m), config=IdleConfig(auto_stop=False))
    # Idle from 15 to 60 on two GPUs, checked every minute: 45 min x 2 GPUs.
    assert decisions[-1].state.idle_gpu_seconds == pytest.approx(45 * 60 * 2)
    busy = run([m for m in range(15, 61)], lambda m: {"0": series("0", 0, m, 50.0)})
    assert busy[-1].state.idle_gpu_seconds == 0.0


def test_a_run_found_late_counts_whole():
    d = assess(T0, idle("0", end=40), IdleState(idle_gpu_seconds=100.0), at(40), CONFIG)
    assert d.state.idle_gpu_seconds == pytest.approx(100.0 + 25 * 60)


def test_fetch_since_starts_after_the_warm_up_or_at_the_run():
    now = at(200)
    assert CONFIG.fetch_since(T0, None, now) == at(140)  # an hour back
    assert CONFIG.fetch_since(T0, at(20), now) == at(20)  # where the known run started
    assert CONFIG.fetch_since(at(190), None, now) == at(205)  # not before the warm-up ends
    assert CONFIG.fetch_since(T0, at(20) + timedelta(microseconds=5), now) == at(20)  # whole seconds


# --- stuck: busy, then idle for hang_timeout with no progress since -----------------------------
def busy_then_idle(*gpus: str, until: float, end: float, util: float = 95.0) -> dict[str, list[Sample]]:
    """Every GPU busy in the windows ending up to `until`, idle after, samples up to `end`."""
    return {gpu: series(gpu, 0, end, {m: util for m in range(0, int(until) + 1)}) for gpu in gpus}


def test_busy_then_idle_for_the_hang_timeout_without_progress_is_stuck():
    samples = busy_then_idle("0", "1", until=20, end=30)  # idle since 20
    assert assess_hang(samples, None, at(29.5), CONFIG, expected_gpus=2) is None  # 9.5 min: not yet
    hang = assess_hang(samples, at(18), at(30), CONFIG, expected_gpus=2)
    assert hang == Hang(idle_since=at(20), idle_for=timedelta(minutes=10), busy_percent=95.0, last_progress=at(18))
    assert hang.reason() == "stuck: GPUs idle for 10m after running at 95%; last progress 09:18 UTC"
    assert assess_hang(samples, None, at(30), CONFIG).reason().endswith("; no progress reported")


def test_idle_with_progress_since_is_not_stuck_and_keeps_the_idle_warning():
    samples = busy_then_idle("0", until=20, end=60)
    assert assess_hang(samples, at(21), at(60), CONFIG) is None  # a heartbeat after the GPUs went idle
    assert assess(T0, samples, IdleState(), at(60), CONFIG).action == IdleAction.WARN  # idle: 40 min


def test_gpus_that_never_got_busy_are_not_stuck_but_idle_as_before():
    samples = idle("0", "1", end=60)
    assert assess_hang(samples, None, at(60), CONFIG) is None
    assert assess(T0, samples, IdleState(), at(60), CONFIG).action == IdleAction.WARN


def test_not_stuck_while_one_gpu_works_or_is_unknown_or_when_turned_off():
    half = busy_then_idle("0", until=20, end=60) | {"1": series("1", 0, 60, 60.0)}
    assert assess_hang(half, None, at(60), CONFIG) is None
    assert assess_hang(busy_then_idle("0", until=20, end=60), None, at(60), CONFIG, expected_gpus=2) is None
    gap = {"0": [s for s in busy_then_idle("0", until=20, end=60)["0"] if s.at != at(25)]}
    assert assess_hang(gap, None, at(60), CONFIG) is None  # what came before the run is unknown
    off = IdleConfig(hang_timeout=timedelta(0))
    assert assess_hang(busy_then_idle("0", until=20, end=60), None, at(60), off) is None


def test_the_last_gpu_to_go_idle_starts_the_hang_and_the_busiest_names_it():
    samples = busy_then_idle("0", until=20, end=40, util=40.0) | busy_then_idle("1", until=25, end=40, util=97.0)
    hang = assess_hang(samples, None, at(35), CONFIG)
    assert hang is not None and hang.idle_since == at(25) and hang.busy_percent == 97.0


def test_fetch_since_for_hangs_reaches_back_to_the_busy_window_on_the_same_grid():
    now = at(200)
    assert CONFIG.fetch_since(T0, None, now, hangs=True) == at(140)  # as before when far from the start
    assert CONFIG.fetch_since(T0, None, at(12), hangs=True) == T0  # even in the warm-up: hangs need no warm-up
    # Hung at 10, in the warm-up; the stored run starts where it ends (15): look back to the busy window.
    assert CONFIG.fetch_since(T0, at(15), at(16), hangs=True) == at(0)
    assert CONFIG.fetch_since(T0, at(20), at(200), hangs=True) == at(20)  # long idle: from the run, as before
    assert CONFIG.fetch_since(T0, at(20), at(26), hangs=True) == at(10)  # whole windows before the run
