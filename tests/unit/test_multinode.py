"""--nodes N on the core's surfaces: the grammar, the words people read, cost, budgets and idle detection."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from functools import partial

import pytest

from core.budget import BudgetConfig
from core.cost import Prices
from core.events import ExperimentLaunched
from core.grammar import parse_launch
from core.idle import IdleAction
from core.idle_job import IdleWarning
from core.messages import describe, gpus_label
from core.model import Experiment, State
from core.ports import AttemptLaunch
from core.spec import ExperimentSpec, LaunchConfig, default_gpu_catalog
from core.supervisor import Supervisor
from tests.fakes.backend import FakeBackend
from tests.fakes.clock import FakeClock
from tests.fakes.store import FakeDatabase, FakeUnitOfWork
from tests.unit.grammar_helpers import error, one
from tests.unit.conftest import make_world
from tests.unit.test_idle_job import IdleWorld, world  # noqa: F401 (the fixture)


def test_nodes_default_to_one_and_gpus_are_per_node():
    assert one("gang-a -- python t.py").nodes == 1
    gang = one("gang-a --nodes 4 --gpus 8 --gpu-type a100 -- torchrun t.py")
    assert (gang.nodes, gang.gpus, gang.total_gpus) == (4, 8, 32)
    assert one("gang-a --nodes=2 -- python t.py").nodes == 2


@pytest.mark.parametrize("text, says", [
    ("gang-a --nodes 0 -- x", "--nodes must be between 1 and 16, got '0'"),
    ("gang-a --nodes two -- x", "--nodes expects a whole number, got 'two'"),
    ("gang-a --nodes 2 --nodes 3 -- x", "--nodes was given twice"),
    ("gang-a --nodes -- x", "--nodes"),
])
def test_bad_node_counts_get_one_clear_line(text, says):
    problem = error(text)
    assert says in str(problem) and "\n" not in str(problem) and problem.option == "--nodes"


def test_the_configured_maximum_bounds_nodes():
    assert "between 1 and 4, got '5'" in str(error("gang-a --nodes 5 -- x", LaunchConfig(max_nodes=4)))


def test_every_sweep_member_is_a_gang():
    request = parse_launch("gang-s --nodes 2 --gpus 4 --sweep lr=1,2 -- python t.py --lr {lr}", LaunchConfig())
    assert [(s.nodes, s.gpus) for s in request.specs] == [(2, 4), (2, 4)]


def test_labels_name_nodes_and_gpus_per_node():
    assert gpus_label(8, "a100", 4) == "4 nodes x 8 a100"
    assert gpus_label(2, "a100") == "2x a100"
    assert gpus_label(0, None, 3) == "3 nodes, CPU only" and gpus_label(0, None) == "CPU only"
    event = ExperimentLaunched(experiment_id="e", experiment_name="n", occurred_at=_now(), owner="ana",
                               project="p", gpus=8, gpu_type="h100", nodes=2)
    assert describe(event) == "launched by ana in project p with 2 nodes x 8 h100"
    stored_before = {key: value for key, value in event.model_dump().items() if key != "nodes"}
    assert describe(ExperimentLaunched.model_validate(stored_before)).endswith("with 8x h100")


def spec(**fields) -> ExperimentSpec:
    return ExperimentSpec(name="llm", command=("t",), image="img", **fields)


def test_cost_counts_every_node():
    prices = Prices(gpu_catalog=default_gpu_catalog())
    single = spec(gpus=8, gpu_type="a100", cpu="16", memory="64Gi", max_runtime=timedelta(hours=10))
    gang = spec(gpus=8, gpu_type="a100", cpu="16", memory="64Gi", max_runtime=timedelta(hours=10), nodes=4)
    assert prices.hourly_rate(gang) == pytest.approx(4 * prices.hourly_rate(single))
    assert prices.projected_cost(gang) == pytest.approx(4 * 8 * 2.5 * 10 + 4 * 10 * (16 * 0.03 + 64 * 0.004))


def test_an_attempt_records_every_nodes_gpus_for_the_cost_reports():
    exp = Experiment(id=uuid.uuid4().hex, spec=spec(gpus=8, gpu_type="a100", nodes=2), owner="ana", created_at=_now())
    exp.launched(_now())
    attempt = exp.start_attempt(None, _now(), hourly_rate=40.0)
    assert attempt.gpus == 16  # GPU-hours in the digest = gpus x time, priced at the whole gang's rate
    assert exp.events[0].gpus == 8 and exp.events[0].nodes == 2


def _gang(world: IdleWorld, nodes: int, gpus: int) -> Experiment:
    now = world.clock.now()
    gang = ExperimentSpec(name="gang", command=("t",), image="py", gpus=gpus, nodes=nodes, gpu_type="a100")
    exp = Experiment(id=uuid.uuid4().hex, spec=gang, owner="ana", created_at=now)
    exp.launched(now)
    exp.start_attempt(None, now)
    exp.mark_running(now)
    with world.uow() as uow:
        uow.experiments.add(exp)
        uow.commit()
    world.backend.submit(AttemptLaunch(exp.id, "gang", 1, gang, "ana", None, timedelta(hours=1)))
    world.backend.run(exp.id, 1)
    return exp


def test_a_gang_is_idle_only_when_every_gpu_of_every_node_is(world):  # noqa: F811
    exp = _gang(world, nodes=2, gpus=2)
    for gpu in ("node-a:0", "node-a:1"):  # only one node's GPUs reported: not known to be idle
        world.metrics.set(exp.id, gpu, 0.0, start=world.clock.now())
    assert world.minutes(60) == []
    for gpu in ("node-b:0", "node-b:1"):
        world.metrics.set(exp.id, gpu, 0.0, start=world.clock.now())
    actions = world.minutes(60)
    assert [o.action for _, o in actions][:1] == [IdleAction.WARN]
    [warning] = [e for e in world.events(exp) if isinstance(e, IdleWarning)]
    assert warning.owner == "ana"
    assert world.states.get(exp.id).idle_gpu_seconds % 4 == 0 and world.states.get(exp.id).idle_gpu_seconds > 0


def _now() -> datetime:
    return datetime(2026, 12, 6, 12, tzinfo=timezone.utc)


def test_a_gang_that_does_not_fit_holds_back_only_requests_as_large_in_all():
    db, clock = FakeDatabase(), FakeClock()
    backend, uow = FakeBackend(gpus=8, clock=clock), partial(FakeUnitOfWork, db)
    supervisor = Supervisor(uow, backend, clock, stop_in_background=False)

    def add(name: str, **fields) -> None:
        clock.advance(seconds=1)  # launched in this order
        exp = Experiment(id=uuid.uuid4().hex, spec=ExperimentSpec(name=name, command=("t",), image="py", **fields),
                         owner="ana", created_at=clock.now())
        exp.launched(clock.now())
        with uow() as unit:
            unit.experiments.add(exp)
            unit.commit()

    add("busy", gpus=2)
    supervisor.reconcile_once()
    add("gang", gpus=4, nodes=2)  # 8 GPUs in all: 6 are free, it waits
    add("single", gpus=6)  # smaller in all than the gang: it fits and must not wait behind it
    supervisor.reconcile_once()
    with uow() as unit:
        states = {name: str(unit.experiments.get_by_name(name).state) for name in ("gang", "single")}
    assert states == {"gang": "QUEUED", "single": "STARTING"}
    assert [launch.experiment_name for launch, _ in backend.refused] == ["gang"]


def test_a_gang_needs_approval_for_all_its_nodes_and_its_runtime_is_billed_whole():
    world = make_world(budgets=BudgetConfig(projects={"nlp": 150.0}))
    world.launch("one --project nlp --gpus 4 --gpu-type a100 --hours 10 -- t")  # 4 x 2.5 x 10 = 100: fits
    world.launch("gang --project nlp --nodes 2 --gpus 2 --gpu-type a100 --hours 10 -- t")  # 2 x 2 x 2.5 x 10 = 100
    assert world.get("one").state == State.QUEUED and world.get("gang").state == State.PENDING_APPROVAL
    with world.uow() as uow:
        [request] = [e for e in uow.outbox.for_experiment(world.get("gang").id) if e.kind == "ApprovalRequested"]
    assert request.projected_cost == 100.0 and request.budgets[0]["committed"] == 100.0
