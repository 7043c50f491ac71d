"""Supervision policy: a pure function from (experiment, attempt outcome, now) to a decision."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from core.durations import format_duration
from core.model import Experiment, FailureClass
from core.signatures import Catalog, SignatureClass

# Exit codes of a process killed by SIGKILL / SIGTERM: without OOMKilled, somebody else killed it.
_KILLED_BY_SIGNAL = frozenset({137, 143})


class Cause(StrEnum):
    """Why expbot itself ended an attempt (None: it ended on its own)."""

    STALL = "stall"
    MAX_RUNTIME = "max-runtime"
    STOPPED = "stopped"
    IDLE = "idle"


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended, as the backend (and expbot) saw it."""

    exit_code: int | None
    reason: str = ""
    infra: bool = False  # backend saw preemption / eviction / node loss
    lost: bool = False  # backend lost the process or its node
    oom_killed: bool = False
    log_tail: str = ""
    cause: Cause | None = None
    node: str | None = None  # where it ran, when the backend knows
    disruption: str = ""  # the cluster's account of ending it (preempted, evicted...), whatever the exit code


class Action(StrEnum):
    SUCCEED = "succeed"
    RESTART = "restart"
    FAIL = "fail"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    action: Action
    failure_class: FailureClass
    reason: str
    delay: timedelta = timedelta(0)
    budget: str | None = None  # for RESTART: "user", "infra" or "none"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between attempts."""

    base: timedelta = timedelta(seconds=10)
    cap: timedelta = timedelta(minutes=10)
    jitter: float = 0.5  # the delay is drawn from [d * (1 - jitter), d]

    def delay(self, restart_number: int, rng: random.Random) -> timedelta:
        """Delay before restart number n (1-based): base * 2^(n-1), capped, jittered."""
        exponent = min(max(restart_number - 1, 0), 32)  # 2^32 * base is past any sane cap
        full = min(self.cap.total_seconds(), self.base.total_seconds() * (2**exponent))
        low = full * (1.0 - self.jitter)
        return timedelta(seconds=rng.uniform(low, full))


# What each signature class means for the budgets: hardware and network are infrastructure.
_SIGNATURE_CLASS = {
    SignatureClass.HARDWARE: FailureClass.HARDWARE,
    SignatureClass.NETWORK: FailureClass.NETWORK,
    SignatureClass.USER: FailureClass.USER,
    SignatureClass.GIVE_UP: FailureClass.GIVE_UP,
}
_SIGNATURE_WORDS = {
    SignatureClass.HARDWARE: "hardware fault", SignatureClass.NETWORK: "network fault",
    SignatureClass.USER: "error in the code", SignatureClass.GIVE_UP: "unrecoverable error",
}
INFRASTRUCTURE = frozenset({FailureClass.INFRA, FailureClass.HARDWARE, FailureClass.NETWORK, FailureClass.STALL})
DEFAULT_CATALOG = Catalog()


def classify(
    experiment: Experiment, outcome: AttemptOutcome, catalog: Catalog = DEFAULT_CATALOG
) -> tuple[FailureClass, str]:
    """Sort an outcome into a failure class, with a human reason (naming the evidence)."""
    if outcome.cause is not None:
        return _CAUSE_CLASS[outcome.cause], outcome.reason or _CAUSE_REASON[outcome.cause]
    code, by_cluster = outcome.exit_code, ended_by_cluster(outcome)
    if code == 0 and not by_cluster and not outcome.lost:
        return FailureClass.NONE, "exited 0"
    if outcome.lost:
        return FailureClass.INFRA, outcome.reason or "lost by the cluster"
    if by_cluster:
        return FailureClass.INFRA, outcome.reason or outcome.disruption or "preempted"
    if outcome.oom_killed:
        return FailureClass.USER, outcome.reason or "OOMKilled: out of memory"
    found = catalog.match(outcome.log_tail, code)
    if found is not None:
        kind = found.signature.failure_class
        return _SIGNATURE_CLASS[kind], f"{_SIGNATURE_WORDS[kind]} ({found.signature.label}): {found.evidence}"
    if code in _KILLED_BY_SIGNAL:
        return FailureClass.INFRA, outcome.reason or f"killed by signal {code - 128}"
    pattern = _matching_pattern(experiment.spec.give_up_patterns, outcome.log_tail)
    if pattern is not None:
        return FailureClass.GIVE_UP, f"log matched give-up pattern {pattern!r}"
    if code is not None and code in experiment.spec.retry_on_exit_codes:
        return FailureClass.RETRYABLE_EXIT, outcome.reason or f"exited {code} (listed as retryable)"
    return FailureClass.USER, outcome.reason or f"exited {code}"


def ended_by_cluster(outcome: AttemptOutcome) -> bool:
    """Whether the machine, not the code, ended an attempt that has an end of its own to weigh.

    A disruption the cluster reports beside the container's end counts only when the code did not end
    on its own account: an exit 0 finished the work, an OOM kill is its own memory (exit 137 then says
    nothing about who killed it). Without such an account, the backend's infra flag is the word.
    """
    if outcome.disruption:
        return outcome.exit_code != 0 and not outcome.oom_killed
    return outcome.infra


def decide(
    experiment: Experiment, outcome: AttemptOutcome, now: datetime, rng: random.Random,
    backoff: Backoff = Backoff(), catalog: Catalog = DEFAULT_CATALOG,
) -> Decision:
    """What to do after an attempt ended: succeed, restart (after a delay), fail or stop."""
    failure_class, reason = classify(experiment, outcome, catalog)
    spec = experiment.spec
    if failure_class is FailureClass.NONE:
        return Decision(Action.SUCCEED, failure_class, reason)
    if failure_class in (FailureClass.STOPPED, FailureClass.IDLE):
        return Decision(Action.STOP, failure_class, reason)
    if failure_class is FailureClass.MAX_RUNTIME or experiment.runtime(now) >= spec.max_runtime:
        limit = format_duration(spec.max_runtime)
        return Decision(Action.FAIL, FailureClass.MAX_RUNTIME, f"max runtime {limit} reached ({reason})")
    if failure_class is FailureClass.GIVE_UP:
        return Decision(Action.FAIL, failure_class, reason)
    if failure_class in INFRASTRUCTURE:
        if experiment.infra_restarts >= spec.max_preemptions:
            return Decision(
                Action.FAIL, failure_class,
                f"{reason}; gave up after {experiment.infra_restarts} infrastructure restarts "
                f"(max-preemptions {spec.max_preemptions})",
            )
        budget = "infra"
    elif failure_class is FailureClass.RETRYABLE_EXIT:
        budget = "none"
    else:
        if experiment.user_restarts >= spec.max_restarts:
            return Decision(
                Action.FAIL, failure_class,
                f"{reason}; gave up after {experiment.user_restarts} restarts "
                f"(max-restarts {spec.max_restarts})",
            )
        budget = "user"
    delay = backoff.delay(experiment.restarts + 1, rng)
    return Decision(Action.RESTART, failure_class, reason, delay=delay, budget=budget)


def nodes_to_avoid(experiment: Experiment, limit: int) -> tuple[tuple[str, ...], str]:
    """Where earlier attempts hit infrastructure failures, newest first, and a note when there are
    more than `limit` of them: then nothing is excluded (the fault is likely not the nodes')."""
    bad: list[str] = []
    for attempt in reversed(experiment.attempts):
        if attempt.node and attempt.failure_class in INFRASTRUCTURE and attempt.node not in bad:
            bad.append(attempt.node)
    if limit <= 0 or not bad:
        return (), ""
    if len(bad) > limit:
        return (), f"infrastructure failures on {len(bad)} different nodes (more than {limit}): no longer avoiding any"
    return tuple(bad), ""


def _matching_pattern(patterns: tuple[str, ...], log_tail: str) -> str | None:
    return next((p for p in patterns if p and p in log_tail), None)


_CAUSE_CLASS = {
    Cause.STALL: FailureClass.STALL,
    Cause.MAX_RUNTIME: FailureClass.MAX_RUNTIME,
    Cause.STOPPED: FailureClass.STOPPED,
    Cause.IDLE: FailureClass.IDLE,
}
_CAUSE_REASON = {
    Cause.STALL: "stalled: no new checkpoint or heartbeat",
    Cause.MAX_RUNTIME: "max runtime reached",
    Cause.STOPPED: "stopped",
    Cause.IDLE: "stopped as idle",
}
