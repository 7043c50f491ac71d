"""Launch and stop, through the message bus, on fakes."""
from __future__ import annotations

from datetime import timedelta

import pytest

from core import commands
from core.errors import (
    CapacityError,
    ExpbotError,
    NameInUse,
    NotAllowed,
    NotFound,
    SpecError,
)
from core.grammar import parse_launch
from core.handlers import preflight
from core.model import State
from core.spec import LaunchConfig
from core.supervisor import Supervisor


def test_launch_stores_a_queued_experiment_with_its_event(world):
    result = world.launch("train --gpus 2 --gpu-type a100 -- python train.py", key="k1")
    [exp] = result.experiments
    assert not result.duplicate and exp.state == State.QUEUED and exp.owner == "ana"
    stored = world.get("train")
    assert stored.spec.gpus == 2 and stored.spec.command == ("python", "train.py")
    assert world.events("train") == ["ExperimentLaunched"]


def test_same_request_three_times_launches_once(world):
    ids = {world.launch("once -- true", key="slack-trigger-1").experiments[0].id for _ in range(3)}
    assert len(ids) == 1 and len(world.db.experiments) == 1
    assert world.launch("once -- true", key="slack-trigger-1").duplicate


def test_sweep_launches_a_group_and_is_idempotent_as_a_whole(world):
    result = world.launch("sw --sweep lr=1,2 --sweep bs=8,16 -- python t.py --lr {lr}", key="k")
    assert [e.name for e in result.experiments] == ["sw-1", "sw-2", "sw-3", "sw-4"]
    again = world.launch("sw --sweep lr=1,2 --sweep bs=8,16 -- python t.py --lr {lr}", key="k")
    assert again.duplicate and [e.id for e in again.experiments] == [e.id for e in result.experiments]
    assert len(world.db.experiments) == 4


def test_bad_text_raises_a_spec_error_and_stores_nothing(world):
    with pytest.raises(SpecError) as e:
        world.launch("train --gpus four -- true")
    assert e.value.option == "--gpus"
    assert world.db.experiments == {}


def test_more_gpus_than_the_cluster_has_is_refused_at_launch(world):
    with pytest.raises(CapacityError, match="8 GPUs"):
        world.launch("big --gpus 8 -- true")
    assert world.db.experiments == {}


def test_active_names_are_unique_but_ended_names_can_be_reused(world):
    world.launch("dup -- true")
    with pytest.raises(NameInUse):
        world.launch("dup -- true")
    world.bus.handle(commands.StopExperiment(name="dup", by="ana"))
    world.clock.advance(seconds=1)
    second = world.launch("dup -- true").experiments[0]
    assert world.get("dup").id == second.id


def preflight_of(world, text: str, key: str | None = None):
    with world.uow() as uow:
        return preflight(uow, parse_launch(text, LaunchConfig()).specs, backend=world.backend, idempotency_key=key)


def test_preflight_is_the_launch_rule_and_names_the_field_at_fault(world):
    world.launch("sw-2 -- true")
    assert preflight_of(world, "other --sweep lr=1,2 -- true") == []
    with pytest.raises(NameInUse, match="'sw-2' is already QUEUED") as in_use:
        preflight_of(world, "sw --sweep lr=1,2 -- true")  # a sweep member's name is taken
    assert in_use.value.option == "name"
    with pytest.raises(CapacityError, match="8 GPUs") as too_big:
        preflight_of(world, "big --gpus 8 -- true")
    assert too_big.value.option == "--gpus"
    with pytest.raises(NameInUse):
        world.launch("sw --sweep lr=1,2 -- true")
    assert [e.name for e in world.db.experiments.values()] == ["sw-2"]


def test_preflight_of_a_request_already_launched_returns_it_instead_of_name_in_use(world):
    first = world.launch("again -- true", key="view:V1").experiments
    assert [e.id for e in preflight_of(world, "again -- true", key="view:V1")] == [e.id for e in first]
    with pytest.raises(NameInUse):
        preflight_of(world, "again -- true", key="view:V2")


def test_only_the_owner_or_an_admin_may_stop(world):
    world.launch("mine -- true", owner="ana")
    with pytest.raises(NotAllowed):
        world.bus.handle(commands.StopExperiment(name="mine", by="bob"))
    assert world.get("mine").state == State.QUEUED
    world.bus.handle(commands.StopExperiment(name="mine", by="carol", as_admin=True))
    exp = world.get("mine")
    assert exp.state == State.STOPPED and exp.stopped_by == "carol"


def test_stop_of_a_running_attempt_is_carried_out_by_the_supervisor(world):
    world.launch("run -- true")
    world.supervisor.reconcile_once()
    exp = world.get("run")
    world.backend.run(exp.id, 1)
    world.supervisor.reconcile_once()
    world.bus.handle(commands.StopExperiment(name="run", by="ana", reason="wrong lr"))
    exp = world.get("run")
    # Recorded first; the caller (a CLI that may be interrupted) sends no signal itself.
    assert exp.state == State.STOPPING and exp.state_reason == "wrong lr" and exp.stopped_by == "ana"
    assert world.backend.stops == []
    assert "StopRequested" in world.events("run")
    world.supervisor.reconcile_once()
    assert [(s[0], s[1]) for s in world.backend.stops] == [(exp.id, 1)]
    world.supervisor.reconcile_once()
    exp = world.get("run")
    assert exp.state == State.STOPPED and exp.state_reason == "wrong lr" and exp.stopped_by == "ana"
    assert exp.attempts[0].failure_class == "stopped" and exp.attempts[0].exit_code == 143
    # The process's death (exit 143) never turns into a restart, and it is stopped once.
    world.supervisor.reconcile_once()
    assert world.get("run").state == State.STOPPED and len(world.get("run").attempts) == 1
    assert len(world.backend.stops) == 1


def test_stop_grace_counts_from_the_request_even_across_a_supervisor_restart(world):
    world.launch("run -- true")
    world.supervisor.reconcile_once()
    exp = world.get("run")
    world.backend.run(exp.id, 1)
    world.supervisor.reconcile_once()
    world.bus.handle(commands.StopExperiment(name="run", by="ana"))
    world.clock.advance(seconds=10)  # no supervisor ran meanwhile
    fresh = Supervisor(world.supervisor.uow_factory, world.backend, world.clock,
                       stop_grace=timedelta(seconds=30), stop_in_background=False)
    fresh.reconcile_once()
    assert world.backend.stops == [(exp.id, 1, timedelta(seconds=20))]
    fresh.reconcile_once()
    assert world.get("run").state == State.STOPPED


def test_stop_twice_while_stopping_is_no_error(world):
    world.launch("run -- true")
    world.supervisor.reconcile_once()
    world.bus.handle(commands.StopExperiment(name="run", by="ana"))
    again = world.bus.handle(commands.StopExperiment(name="run", by="ana"))
    assert again.state == State.STOPPING


def test_stop_by_id_or_unique_id_prefix(world):
    world.launch("run -- true")
    exp = world.get("run")
    world.bus.handle(commands.StopExperiment(name=exp.id[:8], by="ana"))
    assert world.get("run").state == State.STOPPED
    with pytest.raises(NotFound):
        world.bus.handle(commands.StopExperiment(name="zzz", by="ana"))


def test_stop_unknown_or_ended(world):
    with pytest.raises(NotFound):
        world.bus.handle(commands.StopExperiment(name="ghost", by="ana"))
    world.launch("x -- true")
    world.bus.handle(commands.StopExperiment(name="x", by="ana"))
    with pytest.raises(ExpbotError, match="already ended"):
        world.bus.handle(commands.StopExperiment(name="x", by="ana"))
