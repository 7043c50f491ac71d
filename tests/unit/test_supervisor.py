"""The supervisor carries out the policy against a scripted cluster."""
from __future__ import annotations

from datetime import timedelta

from core.model import State


def start(world, text: str = "exp -- python train.py"):
    world.launch(text)
    world.supervisor.reconcile_once()
    exp = world.get(text.split()[0])
    world.backend.run(exp.id, len(exp.attempts))
    world.supervisor.reconcile_once()
    return world.get(exp.name)


def test_queued_experiment_starts_then_runs_then_succeeds(world):
    exp = start(world)
    assert exp.state == State.RUNNING and exp.attempts[0].started_at == world.clock.now()
    world.clock.advance(minutes=5)
    world.backend.exit(exp.id, 1, 0)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.SUCCEEDED
    assert exp.runtime(world.clock.now()) == timedelta(minutes=5)
    assert world.events("exp")[-1] == "ExperimentSucceeded"


def test_lost_attempt_restarts_after_backoff_from_the_newest_checkpoint(world):
    exp = start(world, "exp --max-restarts 0 -- python train.py")
    world.backend.set_checkpoint(exp.id, "/ck/ckpt-000040.json")
    world.backend.lose(exp.id, 1)
    due = world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.RESTARTING and exp.infra_restarts == 1 and exp.user_restarts == 0
    assert due == world.clock.now() + timedelta(seconds=10)  # base backoff, no jitter in this world
    world.clock.advance(seconds=5)
    world.supervisor.reconcile_once()
    assert len(world.get("exp").attempts) == 1  # not before the backoff is over
    world.clock.advance(seconds=5)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.STARTING and exp.attempts[1].resumed_from == "/ck/ckpt-000040.json"
    assert world.backend.submits[-1].resume_from == "/ck/ckpt-000040.json"
    assert world.backend.submits[-1].attempt == 2


def test_user_failures_spend_the_budget_then_fail_with_the_exit_code(world):
    exp = start(world, "exp --max-restarts 1 -- python train.py")
    world.backend.exit(exp.id, 1, 3)
    world.supervisor.reconcile_once()
    world.clock.advance(seconds=10)
    world.supervisor.reconcile_once()
    world.backend.run(exp.id, 2)
    world.supervisor.reconcile_once()
    world.backend.exit(exp.id, 2, 3)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and len(exp.attempts) == 2
    assert "exited 3" in exp.state_reason and "max-restarts 1" in exp.state_reason
    assert [a.exit_code for a in exp.attempts] == [3, 3]


def test_oom_killed_is_a_user_error(world):
    exp = start(world, "exp --max-restarts 0 -- python train.py")
    world.backend.exit(exp.id, 1, 137, reason="OOMKilled", oom=True)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and exp.attempts[0].failure_class == "user"


def test_give_up_pattern_in_the_log_fails_at_once(world):
    exp = start(world, "exp --max-restarts 5 -- python train.py")
    world.backend.write_log(exp.id, 1, "step 10\nRuntimeError: CUDA out of memory. Tried to allocate\n")
    world.backend.exit(exp.id, 1, 1)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and exp.attempts[0].failure_class == "give-up-pattern"


def test_stalled_attempt_is_killed_and_restarted_as_infra(world):
    exp = start(world, "exp --stall-timeout 10m -- python train.py")
    world.clock.advance(minutes=8)
    world.backend.progress(exp.id, 1)
    world.clock.advance(minutes=8)
    world.supervisor.reconcile_once()
    assert world.get("exp").state == State.RUNNING  # progress 8 minutes ago: fine
    world.clock.advance(minutes=3)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.RESTARTING and exp.attempts[0].failure_class == "stall"
    assert exp.infra_restarts == 1
    assert [(s[0], s[1]) for s in world.backend.stops] == [(exp.id, 1)]


def test_max_runtime_is_terminal(world):
    exp = start(world, "exp --max-runtime 1h --max-restarts 5 -- python train.py")
    world.clock.advance(minutes=61)
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.FAILED and exp.attempts[0].failure_class == "max-runtime"
    assert "max runtime 1h" in exp.state_reason
    assert len(world.backend.stops) == 1
    world.clock.advance(hours=1)
    world.supervisor.reconcile_once()
    assert len(world.get("exp").attempts) == 1


def test_experiments_wait_for_gpus_in_order_and_start_when_freed(world):
    a = start(world, "a --gpus 4 -- python train.py")
    world.launch("b --gpus 2 -- python train.py")
    world.supervisor.reconcile_once()
    b = world.get("b")
    assert b.state == State.QUEUED and "waiting for 2 free GPUs" in b.state_reason
    world.backend.exit(a.id, 1, 0)
    world.supervisor.reconcile_once()
    assert world.get("b").state == State.STARTING
    assert world.events("b").count("ExperimentQueued") == 1


def test_attempt_the_cluster_cannot_place_shows_the_schedulers_reason(world):
    world.launch("exp -- python train.py")
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    world.backend.queue(exp.id, 1, reason="0/4 nodes have 8 free nvidia.com/gpu")
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.QUEUED and exp.state_reason == "0/4 nodes have 8 free nvidia.com/gpu"
    world.backend.run(exp.id, 1)
    world.supervisor.reconcile_once()
    assert world.get("exp").state == State.RUNNING and len(world.backend.submits) == 1


def test_submitted_attempt_that_vanished_from_the_backend_is_lost_infra(world):
    exp = start(world)
    del world.backend.attempts[(exp.id, 1)]
    world.supervisor.reconcile_once()
    exp = world.get("exp")
    assert exp.state == State.RESTARTING and exp.attempts[0].failure_class == "infra"


def test_one_broken_experiment_does_not_stop_the_others(world, monkeypatch):
    bad = start(world, "bad -- python train.py")
    good = start(world, "good -- python train.py")
    real_status = world.backend.status

    def flaky(experiment_id, attempt):
        if experiment_id == bad.id:
            raise RuntimeError("cluster API hiccup")
        return real_status(experiment_id, attempt)

    monkeypatch.setattr(world.backend, "status", flaky)
    world.backend.exit(good.id, 1, 0)
    world.supervisor.reconcile_once()
    assert world.get("good").state == State.SUCCEEDED and world.get("bad").state == State.RUNNING


def test_a_pass_asks_the_backend_once_for_a_line_that_cannot_fit(world):
    start(world, "a --gpus 4 -- python train.py")
    for name, gpus in (("b", 2), ("c", 3), ("d", 2)):
        world.clock.advance(seconds=1)  # launch order is queue order
        world.launch(f"{name} --gpus {gpus} -- python train.py")
    world.backend.refused.clear()
    world.supervisor.reconcile_once()
    # b is turned away; c and d need as much or more, so the pass does not ask again.
    assert [launch.experiment_name for launch, _ in world.backend.refused] == ["b"]
    assert {world.get(n).state for n in "bcd"} == {State.QUEUED}


def test_nothing_changes_and_nothing_is_written_while_attempts_just_run(world):
    exp = start(world)
    commits = world.db.events[:]
    world.clock.advance(minutes=1)
    world.supervisor.reconcile_once()
    assert world.db.events == commits and world.get("exp").version == exp.version


def test_an_attempt_that_waited_for_capacity_and_ended_between_passes_is_decided(world):
    """Queued by the cluster, then placed, run and ended before the next pass: no illegal transition."""
    for name, code, expected in (("fails", 1, State.RESTARTING), ("works", 0, State.SUCCEEDED)):
        world.launch(f"{name} --max-restarts 1 -- python train.py")
        world.supervisor.reconcile_once()
        exp = world.get(name)
        world.backend.queue(exp.id, 1)
        world.supervisor.reconcile_once()
        assert world.get(name).state == State.QUEUED
        world.backend.run(exp.id, 1)
        world.backend.exit(exp.id, 1, code)
        world.supervisor.reconcile_once()
        assert world.get(name).state == expected


def test_an_attempt_lost_while_the_cluster_held_it_back_is_restarted(world):
    world.launch("held -- python train.py")
    world.supervisor.reconcile_once()
    exp = world.get("held")
    world.backend.queue(exp.id, 1)
    world.supervisor.reconcile_once()
    world.backend.evict(exp.id, 1)  # never ran
    world.supervisor.reconcile_once()
    held = world.get("held")
    assert held.state == State.RESTARTING and held.attempts[0].failure_class == "infra"
