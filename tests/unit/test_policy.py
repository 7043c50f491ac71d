"""The supervision policy, exactly as DESIGN.md states it."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from core.model import Experiment, FailureClass
from core.policy import Action, AttemptOutcome, Backoff, Cause, classify, decide
from core.spec import ExperimentSpec

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def make(**spec_fields) -> Experiment:
    fields = {"name": "exp", "command": ("python", "train.py"), "image": "img"} | spec_fields
    exp = Experiment(id="e1", spec=ExperimentSpec(**fields), owner="u", created_at=NOW)
    exp.start_attempt(None, NOW)
    exp.mark_running(NOW)
    return exp


def outcome(code: int | None, **kw) -> AttemptOutcome:
    return AttemptOutcome(exit_code=code, **kw)


RNG = random.Random(7)


def test_exit_zero_succeeds():
    d = decide(make(), outcome(0), NOW, RNG)
    assert d.action == Action.SUCCEED and d.failure_class == FailureClass.NONE


@pytest.mark.parametrize(
    "out,expected",
    [
        (outcome(None, lost=True, reason="process vanished"), FailureClass.INFRA),
        (outcome(1, infra=True, reason="Evicted"), FailureClass.INFRA),
        (outcome(0, infra=True, reason="DisruptionTarget"), FailureClass.INFRA),
        (outcome(137), FailureClass.INFRA),
        (outcome(143), FailureClass.INFRA),
        (outcome(137, oom_killed=True), FailureClass.USER),
        (outcome(1), FailureClass.USER),
        (outcome(127, reason="command not found"), FailureClass.USER),
        (outcome(None, cause=Cause.STALL), FailureClass.STALL),
        (outcome(None, cause=Cause.MAX_RUNTIME), FailureClass.MAX_RUNTIME),
        (outcome(None, cause=Cause.STOPPED), FailureClass.STOPPED),
        (outcome(None, cause=Cause.IDLE), FailureClass.IDLE),
    ],
)
def test_classification(out, expected):
    assert classify(make(), out)[0] == expected


def test_infra_failures_restart_without_spending_user_budget():
    exp = make(max_restarts=0, max_preemptions=2)
    d = decide(exp, outcome(None, lost=True), NOW, RNG)
    assert d.action == Action.RESTART and d.budget == "infra"


def test_infra_restarts_are_capped_by_max_preemptions():
    exp = make(max_preemptions=2)
    exp.infra_restarts = 2
    d = decide(exp, outcome(137), NOW, RNG)
    assert d.action == Action.FAIL and "max-preemptions 2" in d.reason


def test_user_failures_spend_max_restarts_then_fail():
    exp = make(max_restarts=2)
    assert decide(exp, outcome(1), NOW, RNG).budget == "user"
    exp.user_restarts = 2
    d = decide(exp, outcome(1), NOW, RNG)
    assert d.action == Action.FAIL and "max-restarts 2" in d.reason and "exited 1" in d.reason


def test_retryable_exit_codes_restart_uncounted_even_with_no_budget_left():
    exp = make(max_restarts=0, retry_on_exit_codes=frozenset({42}))
    d = decide(exp, outcome(42), NOW, RNG)
    assert d.action == Action.RESTART and d.budget == "none"
    assert decide(exp, outcome(43), NOW, RNG).action == Action.FAIL


def test_give_up_pattern_ends_at_once():
    exp = make(max_restarts=5, give_up_patterns=("CUDA out of memory",))
    d = decide(exp, outcome(1, log_tail="RuntimeError: CUDA out of memory. Tried"), NOW, RNG)
    assert d.action == Action.FAIL and d.failure_class == FailureClass.GIVE_UP
    # A pattern never turns an infrastructure kill into a give-up.
    assert decide(exp, outcome(None, lost=True, log_tail="CUDA out of memory"), NOW, RNG).action == Action.RESTART


def test_stall_restarts_as_infra():
    d = decide(make(), outcome(None, cause=Cause.STALL), NOW, RNG)
    assert d.action == Action.RESTART and d.budget == "infra"


@pytest.mark.parametrize("cause,action", [(Cause.STOPPED, Action.STOP), (Cause.IDLE, Action.STOP), (Cause.MAX_RUNTIME, Action.FAIL)])
def test_terminal_causes_never_restart(cause, action):
    exp = make(max_restarts=10, max_preemptions=10)
    assert decide(exp, outcome(None, cause=cause), NOW, RNG).action == action


def test_runtime_used_up_means_no_restart_even_for_infra():
    exp = make(max_runtime=timedelta(hours=1))
    later = NOW + timedelta(hours=1, minutes=1)
    d = decide(exp, outcome(None, lost=True), later, RNG)
    assert d.action == Action.FAIL and d.failure_class == FailureClass.MAX_RUNTIME


def test_backoff_grows_exponentially_within_jitter_and_cap():
    b = Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=100), jitter=0.5)
    rng = random.Random(1)
    for n, full in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (50, 100)]:
        for _ in range(20):
            s = b.delay(n, rng).total_seconds()
            assert full * 0.5 <= s <= full
    no_jitter = Backoff(base=timedelta(seconds=1), cap=timedelta(seconds=60), jitter=0.0)
    assert [no_jitter.delay(n, rng).total_seconds() for n in (1, 2, 3)] == [1, 2, 4]


def test_decision_delay_uses_restart_count():
    exp = make()
    exp.user_restarts, exp.infra_restarts = 1, 2
    b = Backoff(base=timedelta(seconds=1), cap=timedelta(hours=1), jitter=0.0)
    assert decide(exp, outcome(1), NOW, RNG, b).delay == timedelta(seconds=8)
