"""Stuck jobs on fakes: the idle job finds them, the supervisor's inbox ends them as stalled (infrastructure)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from core import commands
from core.idle import IdleAction, IdleConfig
from core.idle_job import HangWatch, IdleWarning, check_idle
from core.model import AttemptState, State
from tests.fakes.idle_states import FakeIdleStates
from tests.fakes.metrics import FakeGpuMetrics
from tests.polling import wait_for
from tests.unit.test_supervisor import start

CONFIG = IdleConfig()  # 5-minute windows, idle after 30 min, stuck after 10


class Hangs:
    """The idle job as serve runs it, beside the world's supervisor."""

    def __init__(self, world) -> None:
        self.world = world
        self.metrics = FakeGpuMetrics()
        self.states = FakeIdleStates(world.db)
        self.watch = HangWatch(progress=self.progress, end_attempt=world.supervisor.end_attempt_later)

    def progress(self, experiment_id: str, attempt: int):
        status = self.world.backend.status(experiment_id, attempt)
        return status.last_progress_at if status else None

    def gpus(self, exp, util: float) -> None:
        for gpu in ("0", "1"):
            self.metrics.set(exp.id, gpu, util, start=self.world.clock.now())

    def minutes(self, n: int, every_minute=None) -> list[tuple[timedelta, IdleAction]]:
        """Run the job (and a supervisor pass) once a minute; (time since the first, action) of each action."""
        seen, start = [], self.world.clock.now()
        for _ in range(n):
            self.world.clock.advance(minutes=1)
            if every_minute:
                every_minute()
            outcomes = check_idle(self.world.uow, self.states, self.metrics, self.world.clock, CONFIG,
                                  self.world.bus, self.watch)
            seen += [(self.world.clock.now() - start, o.action) for o in outcomes if o.action != IdleAction.NONE]
            self.world.supervisor.reconcile_once()
        return seen


@pytest.fixture
def hangs(world) -> Hangs:
    return Hangs(world)


def test_gpus_busy_then_idle_without_progress_restart_the_attempt_as_stuck(world, hangs):
    exp = start(world, "exp --gpus 2 -- python train.py")
    hangs.gpus(exp, 95.0)
    world.clock.advance(minutes=18)
    world.backend.progress(exp.id, 1)  # the last heartbeat, shortly before it hung
    world.clock.advance(minutes=2)
    hangs.gpus(exp, 0.0)
    seen = hangs.minutes(15)
    assert seen == [(timedelta(minutes=10), IdleAction.STUCK)]
    exp = world.get("exp")
    first = exp.attempts[0]
    assert exp.infra_restarts == 1 and exp.user_restarts == 0 and len(exp.attempts) == 2  # restarted
    assert first.failure_class == "stall"
    assert first.reason == "stuck: GPUs idle for 10m after running at 95%; last progress 09:18 UTC"
    assert [(s[0], s[1]) for s in world.backend.stops] == [(exp.id, 1)]
    assert any("stuck: GPUs idle for 10m" in text for text in world.texts("exp"))
    assert "IdleWarning" not in world.events("exp")


def test_idle_gpus_with_progress_get_the_idle_warning_and_are_never_restarted(world, hangs):
    exp = start(world, "exp --gpus 2 -- python train.py")
    hangs.gpus(exp, 95.0)
    world.clock.advance(minutes=20)
    hangs.gpus(exp, 0.0)
    seen = hangs.minutes(40, every_minute=lambda: world.backend.progress(exp.id, 1))
    assert [action for _, action in seen] == [IdleAction.WARN]
    exp = world.get("exp")
    assert exp.state == State.RUNNING and len(exp.attempts) == 1 and world.backend.stops == []
    assert "IdleWarning" in world.events("exp")


def test_gpus_that_never_got_busy_get_the_idle_warning_not_a_restart(world, hangs):
    exp = start(world, "exp --gpus 2 -- python train.py")
    hangs.gpus(exp, 0.0)
    seen = hangs.minutes(50)
    assert seen == [(timedelta(minutes=45), IdleAction.WARN)]
    assert world.get("exp").state == State.RUNNING and world.backend.stops == []


def test_a_hang_in_the_warm_up_is_found_too(world, hangs):
    exp = start(world, "exp --gpus 2 -- python train.py")
    hangs.gpus(exp, 80.0)
    world.clock.advance(minutes=5)
    hangs.gpus(exp, 0.0)
    seen = hangs.minutes(12)
    assert seen == [(timedelta(minutes=10), IdleAction.STUCK)]
    assert world.get("exp").attempts[0].reason.startswith("stuck: GPUs idle for 10m after running at 80%")


def test_no_hang_watch_or_a_zero_timeout_keeps_todays_idle_flow(world, hangs):
    exp = start(world, "exp --gpus 2 -- python train.py")
    hangs.gpus(exp, 95.0)
    world.clock.advance(minutes=20)
    hangs.gpus(exp, 0.0)
    hangs.watch = None  # type: ignore[assignment]
    assert [a for _, a in hangs.minutes(40)] == [IdleAction.WARN]
    assert world.get("exp").state == State.RUNNING


# --- the supervisor's inbox -----------------------------------------------------------------
def test_end_attempt_later_wakes_the_supervisor_and_ends_the_live_attempt_at_the_next_pass(world):
    exp = start(world)
    world.supervisor.scheduler.inbox.wait(0)  # forget wake-ups so far
    world.supervisor.end_attempt_later(exp.id, 1, "stuck: GPUs idle for 10m after running at 95%; no progress reported")
    assert world.supervisor.scheduler.inbox.wait(0) == {exp.id}
    world.supervisor.reconcile_ids({exp.id})
    exp = world.get("exp")
    assert exp.attempts[0].failure_class == "stall" and exp.state == State.RESTARTING
    assert exp.attempts[0].reason.startswith("stuck: GPUs idle for 10m")
    assert world.supervisor._to_end == {}


def test_a_request_for_an_attempt_that_ended_meanwhile_changes_nothing(world):
    exp = start(world)
    world.supervisor.end_attempt_later(exp.id, 1, "stuck: ...")
    world.backend.exit(exp.id, 1, 0)  # it finished before the supervisor looked
    world.supervisor.reconcile_once()
    assert world.get("exp").state == State.SUCCEEDED and world.backend.stops == []
    assert world.supervisor._to_end == {}


def test_a_request_for_an_earlier_attempt_never_ends_the_next_one(world):
    exp = start(world, "exp --max-restarts 2 -- python train.py")
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    world.clock.advance(seconds=10)
    world.supervisor.reconcile_once()
    world.backend.run(exp.id, 2)
    world.supervisor.reconcile_once()
    world.supervisor.end_attempt_later(exp.id, 1, "stuck: late news about attempt 1")
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.RUNNING and exp.attempts[1].state == AttemptState.RUNNING
    assert world.supervisor._to_end == {}


def test_a_stop_wins_over_a_request_to_restart(world):
    exp = start(world)
    world.supervisor.end_attempt_later(exp.id, 1, "stuck: ...")
    world.bus.handle(commands.StopExperiment(name="exp", by="ana"))
    world.supervisor.reconcile_once()
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.STOPPED and exp.attempts[0].failure_class != "stall"


def test_end_attempt_later_from_another_thread_is_carried_out_by_the_run_loop(world):
    exp = start(world)
    stop = threading.Event()
    loop = threading.Thread(target=world.supervisor.run, args=(stop, 30.0), daemon=True)
    loop.start()
    try:
        threading.Thread(target=world.supervisor.end_attempt_later, args=(exp.id, 1, "stuck: from the idle job")).start()
        ended = wait_for(lambda: world.get("exp").attempts[0].failure_class == "stall", timeout=20,
                         what="the attempt ended as stuck")
        assert ended and world.get("exp").attempts[0].reason == "stuck: from the idle job"
    finally:
        stop.set()
        world.supervisor.interrupt()
        loop.join(timeout=10)
