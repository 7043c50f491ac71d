"""Idle states: the same contract on the fake, SQLite and PostgreSQL."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from core.idle import IdleState, kept
from tests.integration.conftest import Store, at, new_experiment
from tests.integration.idle_fixtures import idle_states  # noqa: F401  (fixture)


def test_an_unknown_experiment_reads_as_a_fresh_state(idle_states) -> None:
    assert idle_states.get("nobody") == IdleState()


def test_saved_states_read_back_exactly(idle_states) -> None:
    state = IdleState(idle_since=at(15), warned_at=at(45.5), snoozed_until=at(600), idle_gpu_seconds=1234.5)
    assert idle_states.save("e1", state)
    assert idle_states.get("e1") == state
    assert idle_states.get("e1").idle_since.tzinfo is not None
    cleared = IdleState(idle_gpu_seconds=1300.25)
    assert idle_states.save("e1", cleared)
    assert idle_states.get("e1") == cleared
    assert idle_states.get("e2") == IdleState()


def test_save_with_expected_refuses_a_state_that_changed_meanwhile(idle_states) -> None:
    read = idle_states.get("e1")
    assert idle_states.save("e1", IdleState(idle_since=at(20)), expected=read)  # first row
    warned = IdleState(idle_since=at(20), warned_at=at(50))
    assert not idle_states.save("e1", warned, expected=read)  # stale: the row exists now
    job_read = idle_states.get("e1")
    assert idle_states.save("e1", kept(job_read, at(170)), expected=job_read)  # a Keep lands first
    assert not idle_states.save("e1", warned, expected=job_read)  # the job's stale decision loses
    assert idle_states.get("e1").snoozed_until == at(170)


def test_concurrent_conditional_saves_let_exactly_one_win(idle_states) -> None:
    read = idle_states.get("race")
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def write(n: int) -> None:
        barrier.wait()
        # n + 1: a writer saving 0.0 would store a state equal to the fresh one every writer
        # expects, so a second writer after it would rightly win as well.
        results.append(idle_states.save("race", IdleState(idle_gpu_seconds=float(n + 1)), expected=read))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_total_idle_gpu_hours_over_active_or_recently_updated_experiments(store: Store, idle_states) -> None:
    running, old, recent = new_experiment("running"), new_experiment("old"), new_experiment("recent")
    for exp in (running, old, recent):
        exp.start_attempt(None, at(0))
        exp.mark_running(at(1))
    old.stop("ana", "done", at(60))
    recent.stop("ana", "done", at(60 * 30))
    store.save(running, old, recent)
    idle_states.save(running.id, IdleState(idle_gpu_seconds=3600.0))
    idle_states.save(old.id, IdleState(idle_gpu_seconds=7200.0))
    idle_states.save(recent.id, IdleState(idle_gpu_seconds=1800.0))
    assert idle_states.total_idle_gpu_hours() == pytest.approx(3.5)
    assert idle_states.total_idle_gpu_hours(since=at(60 * 24)) == pytest.approx(1.5)
    assert idle_states.total_idle_gpu_hours(since=at(0) + timedelta(days=30)) == pytest.approx(1.0)
