"""The experiment state machine refuses illegal transitions and records attempts."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core import events as ev
from core.errors import IllegalTransition
from core.model import ALLOWED, TERMINAL, AttemptState, Experiment, FailureClass, State
from core.spec import ExperimentSpec

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


def new() -> Experiment:
    spec = ExperimentSpec(name="exp", command=("true",), image="img", max_runtime=timedelta(hours=2))
    return Experiment(id="e", spec=spec, owner="ana", created_at=T0)


def test_full_life_with_one_restart_records_attempts_and_events():
    exp = new()
    exp.start_attempt(None, T0)
    exp.mark_running(T0 + timedelta(seconds=5))
    exp.end_attempt(137, "killed", FailureClass.INFRA, T0 + timedelta(minutes=10))
    exp.schedule_restart(T0 + timedelta(minutes=11), "infra", "killed", "/ck/ckpt-10", T0 + timedelta(minutes=10))
    second = exp.start_attempt("/ck/ckpt-10", T0 + timedelta(minutes=11))
    exp.mark_running(T0 + timedelta(minutes=11))
    exp.end_attempt(0, "exited 0", FailureClass.NONE, T0 + timedelta(minutes=20))
    exp.succeed(T0 + timedelta(minutes=20))
    assert exp.state == State.SUCCEEDED and exp.is_terminal
    assert second.number == 2 and second.resumed_from == "/ck/ckpt-10"
    assert exp.infra_restarts == 1 and exp.user_restarts == 0
    assert exp.runtime(T0 + timedelta(hours=5)) == timedelta(minutes=9, seconds=55) + timedelta(minutes=9)
    kinds = [e.kind for e in exp.events]
    assert kinds == [
        "AttemptStarted", "AttemptRunning", "AttemptEnded", "RestartScheduled",
        "AttemptStarted", "AttemptRunning", "AttemptEnded", "ExperimentSucceeded",
    ]
    assert all(isinstance(e, ev.Event) and e.experiment_id == "e" for e in exp.events)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_allow_nothing(terminal):
    exp = new()
    exp.state = terminal
    with pytest.raises(IllegalTransition):
        exp.start_attempt(None, T0)
    with pytest.raises(IllegalTransition):
        exp.stop("ana", "x", T0)
    with pytest.raises(IllegalTransition):
        exp.succeed(T0)


def test_cannot_succeed_from_queued_or_restart_from_queued():
    exp = new()
    with pytest.raises(IllegalTransition):
        exp.succeed(T0)
    with pytest.raises(IllegalTransition):
        exp.schedule_restart(T0, "user", "x", None, T0)
    assert exp.events == []


def test_ending_without_an_attempt_is_refused():
    exp = new()
    with pytest.raises(IllegalTransition):
        exp.end_attempt(1, "x", FailureClass.USER, T0)


def test_queue_emits_only_when_the_reason_changes():
    exp = new()
    exp.queue("waiting for 2 GPUs", T0)
    exp.queue("waiting for 2 GPUs", T0)
    exp.queue("waiting for 4 GPUs", T0)
    assert [e.reason for e in exp.events] == ["waiting for 2 GPUs", "waiting for 4 GPUs"]


def test_attempt_queued_by_the_cluster_can_then_run():
    exp = new()
    exp.start_attempt(None, T0)
    exp.queue("0/4 nodes have 8 free nvidia.com/gpu", T0)
    exp.mark_running(T0 + timedelta(minutes=1))
    assert exp.state == State.RUNNING and exp.current_attempt.state == AttemptState.RUNNING


def test_attempt_that_ends_before_it_was_seen_running_has_zero_runtime():
    exp = new()
    exp.start_attempt(None, T0)
    attempt = exp.end_attempt(127, "command not found", FailureClass.USER, T0 + timedelta(seconds=1))
    assert attempt.running_time(T0 + timedelta(hours=1)) == timedelta(0)


def test_every_state_has_a_rule_and_terminal_ones_have_none():
    assert set(ALLOWED) == set(State) - TERMINAL
    for targets in ALLOWED.values():
        assert targets <= set(State)
