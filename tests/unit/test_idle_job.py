"""The idle job and Keep on fakes: warn through the outbox, stop after the grace (audited), Keep snoozes."""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

from core import commands, handlers
from core.bus import MessageBus
from core.errors import NotAllowed
from core.idle import IdleAction, IdleConfig, IdleState
from core.idle_job import IdleKept, IdleWarning, KeepExperiment, check_idle, handle_keep
from core.messages import describe
from core.model import Experiment, State
from core.ports import AttemptLaunch
from core.spec import ExperimentSpec
from core.supervisor import Supervisor
from tests.fakes.backend import FakeBackend
from tests.fakes.clock import FakeClock
from tests.fakes.idle_states import FakeIdleStates
from tests.fakes.metrics import FakeGpuMetrics
from tests.fakes.store import FakeDatabase, FakeUnitOfWork

CONFIG = IdleConfig()


@dataclass
class IdleWorld:
    db: FakeDatabase
    clock: FakeClock
    backend: FakeBackend
    bus: MessageBus
    states: FakeIdleStates
    metrics: FakeGpuMetrics
    config: IdleConfig = CONFIG

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.db)

    def running(self, name: str, gpus: int = 2, owner: str = "ana") -> Experiment:
        """A RUNNING experiment whose attempt started now."""
        now = self.clock.now()
        spec = ExperimentSpec.model_validate({"name": name, "command": ("python", "t.py"), "image": "py", "gpus": gpus})
        exp = Experiment(id=uuid.uuid4().hex, spec=spec, owner=owner, created_at=now)
        exp.launched(now)
        exp.start_attempt(None, now)
        exp.mark_running(now)
        with self.uow() as uow:
            uow.experiments.add(exp)
            uow.commit()
        self.backend.submit(AttemptLaunch(exp.id, name, 1, spec, owner, None, timedelta(hours=1)))
        self.backend.run(exp.id, 1)
        return exp

    def check(self):
        return check_idle(self.uow, self.states, self.metrics, self.clock, self.config, self.bus)

    def minutes(self, n: int):
        """Run the job once a minute for n minutes; every outcome with an action."""
        seen = []
        for _ in range(n):
            self.clock.advance(minutes=1)
            seen += [(self.clock.now(), o) for o in self.check() if o.action != IdleAction.NONE]
        return seen

    def get(self, name: str) -> Experiment:
        with self.uow() as uow:
            return uow.experiments.get_by_name(name)

    def events(self, exp: Experiment) -> list:
        with self.uow() as uow:
            return uow.outbox.for_experiment(exp.id)

    def audit(self, action: str) -> list[dict]:
        with self.uow() as uow:
            return uow.audit.entries(action=action)


@pytest.fixture
def world() -> IdleWorld:
    db, clock = FakeDatabase(), FakeClock()
    backend = FakeBackend(gpus=8, clock=clock)
    states = FakeIdleStates(db)
    uow_factory = functools.partial(FakeUnitOfWork, db)
    bus = MessageBus(uow_factory, {
        commands.StopExperiment: functools.partial(handlers.stop, backend=backend, clock=clock, grace=timedelta(seconds=5)),
        KeepExperiment: functools.partial(handle_keep, idle_states=states, clock=clock),
    })
    return IdleWorld(db, clock, backend, bus, states, FakeGpuMetrics())


def test_idle_gpus_are_warned_once_then_stopped_after_the_grace_and_audited(world):
    exp = world.running("idle-one")
    published = []
    world.bus.subscribe_all(published.append)
    for gpu in ("0", "1"):
        world.metrics.set(exp.id, gpu, 0.0, start=world.clock.now())
    start = world.clock.now()
    actions = world.minutes(80)
    assert [(t - start, o.action) for t, o in actions] == [
        (timedelta(minutes=45), IdleAction.WARN), (timedelta(minutes=75), IdleAction.STOP)]
    stopping = world.get("idle-one")
    assert stopping.state == State.STOPPING and stopping.stopped_by == "expbot"
    assert stopping.state_reason == "GPUs idle for 60m; no answer to the warning"
    [warning] = [e for e in world.events(exp) if isinstance(e, IdleWarning)]
    assert (warning.owner, warning.idle_minutes, warning.grace_minutes) == ("ana", 30, 30)
    assert [e.kind for e in published] == ["IdleWarning", "StopRequested"]  # relay woken
    [entry] = world.audit("idle-stop")
    assert entry["actor"] == "expbot" and entry["experiment_id"] == exp.id and entry["detail"]["idle_minutes"] == 60
    # The supervisor carries the stop out: the attempt is ended, then the experiment is STOPPED.
    supervisor = Supervisor(world.uow, world.backend, world.clock, stop_in_background=False)
    supervisor.reconcile_once()
    supervisor.reconcile_once()
    assert world.backend.stops and world.backend.stops[0][0] == exp.id
    stopped = world.get("idle-one")
    assert stopped.state == State.STOPPED and stopped.stopped_by == "expbot"
    assert stopped.state_reason == "GPUs idle for 60m; no answer to the warning"
    assert "ExperimentStopped" in [e.kind for e in world.events(exp)]
    assert world.states.get(exp.id).idle_gpu_seconds == pytest.approx(60 * 60 * 2)


def test_one_busy_gpu_is_never_warned(world):
    exp = world.running("half-busy")
    world.metrics.set(exp.id, "0", 0.0, start=world.clock.now())
    world.metrics.set(exp.id, "1", 40.0, start=world.clock.now())
    assert world.minutes(200) == []
    assert world.get("half-busy").state == State.RUNNING


def test_experiments_without_gpus_or_metrics_are_left_alone(world):
    cpu = world.running("cpu-only", gpus=0)
    unknown = world.running("no-metrics")
    world.metrics.set(cpu.id, "0", 0.0, start=world.clock.now())
    assert world.minutes(120) == []
    assert {c[0] for c in world.metrics.calls} == {unknown.id}
    assert world.states.get(unknown.id) == IdleState()


def test_metrics_errors_are_reported_and_change_nothing(world):
    exp = world.running("blind")
    world.metrics.set(exp.id, "0", 0.0, start=world.clock.now())
    world.metrics.set(exp.id, "1", 0.0, start=world.clock.now())
    world.minutes(40)
    before = world.states.get(exp.id)
    world.metrics.fail()
    world.clock.advance(minutes=30)
    [outcome] = world.check()
    assert outcome.action == IdleAction.NONE and "Prometheus is down" in outcome.error
    assert world.states.get(exp.id) == before


def test_keep_snoozes_the_warning_and_is_audited(world):
    exp = world.running("keeper")
    for gpu in ("0", "1"):
        world.metrics.set(exp.id, gpu, 0.0, start=world.clock.now())
    world.minutes(45)
    assert world.states.get(exp.id).warned_at is not None
    kept = world.bus.handle(KeepExperiment(name="keeper", by="ana", hours=2))
    assert isinstance(kept, IdleKept) and kept.until == world.clock.now() + timedelta(hours=2)
    assert world.states.get(exp.id).warned_at is None
    assert world.minutes(119) == []  # no stop, no new warning while kept
    [(_, again)] = world.minutes(1)
    assert again.action == IdleAction.WARN  # still idle when the Keep ran out
    [entry] = world.audit("idle-keep")
    assert entry["actor"] == "ana" and entry["detail"]["hours"] == 2
    assert "IdleKept" in [e.kind for e in world.events(exp)]
    assert describe(kept).startswith("kept running by ana until")


def test_only_the_owner_or_an_admin_may_keep(world):
    exp = world.running("theirs")
    with pytest.raises(NotAllowed, match="only ana"):
        world.bus.handle(KeepExperiment(name="theirs", by="bob", hours=24))
    assert world.states.get(exp.id) == IdleState() and world.audit("idle-keep") == []
    world.bus.handle(KeepExperiment(name="theirs", by="root", as_admin=True, hours=24))
    assert world.states.get(exp.id).snoozed_until == world.clock.now() + timedelta(hours=24)


def test_activity_after_a_warning_resets_it(world):
    exp = world.running("wakes-up")
    for gpu in ("0", "1"):
        world.metrics.set(exp.id, gpu, 0.0, start=world.clock.now())
    world.minutes(50)
    world.metrics.set(exp.id, "1", 70.0, start=world.clock.now())
    actions = world.minutes(60)
    assert [o.action for _, o in actions] == [IdleAction.RESET]
    assert world.get("wakes-up").state == State.RUNNING
    assert world.states.get(exp.id).warned_at is None


def test_a_keep_that_lands_while_the_job_decides_wins(world):
    exp = world.running("race")
    for gpu in ("0", "1"):
        world.metrics.set(exp.id, gpu, 0.0, start=world.clock.now())
    world.minutes(74)  # warned at 45; the stop is due at 75
    real_samples = world.metrics.samples

    def keep_meanwhile(*args):
        world.bus.handle(KeepExperiment(name="race", by="ana", hours=2))
        return real_samples(*args)

    world.metrics.samples = keep_meanwhile  # type: ignore[method-assign]
    world.clock.advance(minutes=1)
    [outcome] = world.check()
    assert outcome.action == IdleAction.NONE and world.get("race").state == State.RUNNING


def test_a_warning_that_cannot_be_stored_is_not_remembered(world, monkeypatch):
    exp = world.running("unlucky")
    for gpu in ("0", "1"):
        world.metrics.set(exp.id, gpu, 0.0, start=world.clock.now())
    world.minutes(44)

    def broken_commit(self):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(FakeUnitOfWork, "commit", broken_commit)
    world.clock.advance(minutes=1)
    [outcome] = world.check()
    assert "database is locked" in outcome.error
    assert world.states.get(exp.id).warned_at is None  # so it is never stopped unwarned


def test_what_the_idle_check_logs_about_an_experiment_names_it(world):
    """EXPBOT_LOG_FORMAT=json writes these fields: the check binds the experiment it looks at."""
    import io
    import json
    import logging

    from bot.logs import configure_logging
    from core.metrics import MetricsUnavailable

    root = logging.getLogger()
    saved, sink = (root.handlers[:], root.level), io.StringIO()
    configure_logging("INFO", "json", stream=sink)
    try:
        exp = world.running("busy")
        world.clock.advance(minutes=20)  # past the warm-up: the check asks for samples
        world.metrics.failing = MetricsUnavailable("Prometheus is down")
        world.check()
    finally:
        root.handlers[:], root.level = saved
    (entry,) = [json.loads(line) for line in sink.getvalue().splitlines() if "skipped" in line]
    assert (entry["experiment"], entry["experiment_id"], entry["attempt"]) == ("busy", exp.id, 1), entry
