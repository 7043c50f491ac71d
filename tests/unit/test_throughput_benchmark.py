"""The throughput benchmark's expbot arm records exactly what core's Supervisor decides on the same script.

A scripted week (one experiment, incidents at set times) runs through the benchmark's simulated
cluster and expbot arm; the pods it produced are then replayed by hand against core's Supervisor on
the test fakes (FakeBackend, FakeUnitOfWork, FakeClock). Every decision (failure class, budget
spent, restart delay, nodes avoided, the end) must be the same.
"""
from __future__ import annotations

import functools
import math
import random
from datetime import timedelta

import pytest

from benchmarks.throughput.expbot_arm import START, ExpbotArm
from benchmarks.throughput.replay import DAY, Incident, Item, SpotTrace, Week
from benchmarks.throughput.sim import World
from core import commands, handlers
from core.events import AttemptEnded, ExperimentFailed, ExperimentSucceeded, RestartScheduled
from core.policy import Backoff
from core.signatures import Catalog
from core.spec import LaunchConfig
from core.supervisor import Supervisor
from tests.fakes.backend import FakeBackend
from tests.fakes.clock import FakeClock
from tests.fakes.store import FakeDatabase, FakeUnitOfWork

XID_79 = "NVRM: Xid (PCI:0000:3b:00): 79, pid=4242, GPU has fallen off the bus."


def _item(**changes) -> Item:
    base = dict(index=0, arrival=0.0, gpus=8, length=3 * 3600.0, checkpoint_every=900.0, self_resume=False,
                spot=False, bug=None, bug_after=120.0, transient_at=None, transient_exit=75, spot_zone=0,
                spot_offset=0.0, human_rng_seed=1)
    return Item(**(base | changes))


def _week(item: Item, incidents: list[Incident], seed: int = 5) -> Week:
    return Week(seed, [item], incidents, 0.0, SpotTrace())


def _xid_then_drain() -> Week:
    """Attempt 1 dies of Xid 79 on node-00; attempt 2 is drained off its node (node-01 when node-00 is
    avoided, else node-00 again); attempt 3 succeeds."""
    return _week(_item(), [Incident(1000.0, 0, "faulty-gpu", "gpu", XID_79, 0, None),
                           Incident(5000.0, 0, "host-maintenance", "drain", "", 0, None),
                           Incident(5000.0, 1, "host-maintenance", "drain", "", 0, None)])


def _decisions(events) -> list[tuple]:
    """What was decided, in order, without event ids or times."""
    out: list[tuple] = []
    for e in events:
        if isinstance(e, AttemptEnded):
            out.append(("ended", e.attempt, e.failure_class, e.exit_code, e.node))
        elif isinstance(e, RestartScheduled):
            out.append(("restart", e.next_attempt, e.budget, e.spent, e.limit, round(e.delay_seconds, 6),
                        tuple(e.avoid_nodes), e.resume_from))
        elif isinstance(e, ExperimentSucceeded):
            out.append(("succeeded", e.attempts))
        elif isinstance(e, ExperimentFailed):
            out.append(("failed", e.exit_code, e.attempts))
    return out


def _run_arm(week: Week, catalog: Catalog | None):
    kwargs = {} if catalog is None else {"catalog": catalog}
    world = World(week, lambda w: ExpbotArm(w, **kwargs), 2 * DAY)
    world.run()
    arm: ExpbotArm = world.arm  # type: ignore[assignment]
    run = world.ledger.tracks[0].runs[0]
    experiment_id = run.arm["experiment_id"]
    return arm, run, arm.db.experiments[experiment_id], arm.db.events[experiment_id]


def _replay_on_core(arm: ExpbotArm, run, catalog: Catalog | None, seed: int):
    """The arm's pods, one by one, as FakeBackend facts for core's Supervisor (the unit tests' world)."""
    db, clock = FakeDatabase(), FakeClock(START)
    backend = FakeBackend(gpus=128, clock=clock)
    uow_factory = functools.partial(FakeUnitOfWork, db)
    supervisor = Supervisor(uow_factory, backend, clock, rng=random.Random(seed), stop_in_background=False,
                            backoff=Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=600)),
                            **({} if catalog is None else {"catalog": catalog}))
    text = arm.launch_text(run)
    handlers.launch(commands.LaunchExperiment(text=text, owner="researcher"), uow_factory(), config=LaunchConfig(),
                    backend=backend, clock=clock)
    with uow_factory() as uow:
        experiment_id = uow.experiments.get_by_name(text.split()[0]).id
    every = run.item.checkpoint_every
    for n, pod in enumerate(run.pods, start=1):
        supervisor.reconcile_once()
        assert backend.submits[-1].attempt == n and backend.submits[-1].avoid_nodes == pod.avoid
        clock.current = START + timedelta(seconds=pod.started)
        backend.run(experiment_id, n, node=pod.node)
        supervisor.reconcile_once()
        clock.current = START + timedelta(seconds=pod.ended)
        newest = math.floor(pod.progress(pod.ended) / every) * every  # what the attempt left on the volume
        if newest > 0 and pod.kind != "success":
            backend.set_checkpoint(experiment_id, f"/checkpoints/ckpt-{int(newest):08d}.pt")
        if pod.message:
            backend.write_log(experiment_id, n, pod.message)
        if pod.infra:
            backend.evict(experiment_id, n, reason=pod.reason, code=pod.exit_code)
        else:
            backend.exit(experiment_id, n, pod.exit_code, reason=pod.reason)
        due = supervisor.reconcile_once()
        if due is not None:
            clock.current = due
    with uow_factory() as uow:
        return uow.experiments.get(experiment_id), uow.outbox.for_experiment(experiment_id)


@pytest.mark.parametrize("catalog, budgets", [
    (None, ["infra", "infra"]),  # Xid 79 is hardware: infrastructure, not the user's budget
    (Catalog(defaults=()), ["user", "infra"]),  # the ablation: without the catalog it is the code's fault
])
def test_xid_then_preemption_then_success_decided_as_core_decides(catalog, budgets) -> None:
    week = _xid_then_drain()
    arm, run, experiment, events = _run_arm(week, catalog)
    assert [p.kind for p in run.pods] == ["gpu-fault", "drain", "success"]
    core_experiment, core_events = _replay_on_core(arm, run, catalog, week.seed)
    assert _decisions(events) == _decisions(core_events)
    assert [d[2] for d in _decisions(events) if d[0] == "restart"] == budgets
    assert (experiment.state, experiment.user_restarts, experiment.infra_restarts) == (
        core_experiment.state, core_experiment.user_restarts, core_experiment.infra_restarts)
    assert run.outcome == "succeeded"
    assert run.pods[1].avoid == (("node-00",) if budgets[0] == "infra" else ())


def test_a_deterministic_bug_spends_the_user_budget_and_fails_as_core_decides() -> None:
    week = _week(_item(bug="bug"), [])
    arm, run, experiment, events = _run_arm(week, None)
    core_experiment, core_events = _replay_on_core(arm, run, None, week.seed)
    assert _decisions(events) == _decisions(core_events)
    assert len(run.pods) == 4 and experiment.state == "FAILED" and experiment.user_restarts == 3
    assert run.outcome == "gave-up"


def test_an_out_of_memory_bug_fails_at_once_on_the_give_up_pattern() -> None:
    week = _week(_item(bug="oom"), [])
    arm, run, experiment, events = _run_arm(week, None)
    core_experiment, core_events = _replay_on_core(arm, run, None, week.seed)
    assert _decisions(events) == _decisions(core_events)
    assert len(run.pods) == 1 and experiment.attempts[0].failure_class == "give-up-pattern"


def test_a_silent_hang_is_killed_as_stalled_and_resumed_from_the_newest_checkpoint() -> None:
    week = _week(_item(), [Incident(2000.0, 0, "network", "node", "", 0, "silent")])
    arm, run, experiment, events = _run_arm(week, None)
    ended = [e for e in events if isinstance(e, AttemptEnded)]
    assert ended[0].failure_class == "stall" and experiment.state == "SUCCEEDED"
    # Detected at the first resync after 2000 s + the 30 min stall timeout; resumed from the 1800 s checkpoint.
    assert (ended[0].occurred_at - START).total_seconds() == 3810.0
    assert run.pods[1].p0 == 1800.0 and run.track.touches == 0
