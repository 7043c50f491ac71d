"""Budgets: admission, approval by approvers only, expiry, audit, alerts, month boundaries."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import commands
from core.budget import BudgetConfig, month_window
from core.budget_alerts import due_alerts
from core.errors import ExpbotError, NotAllowed
from core.model import State
from tests.unit.conftest import make_world

# a100 costs 2.5/GPU-hour in the default catalog: 4 GPUs x 10 h = 100.
BUDGETS = BudgetConfig(projects={"nlp": 150.0}, users={"bob": 20.0}, approval_ttl=timedelta(hours=24))


@pytest.fixture
def world():
    return make_world(budgets=BUDGETS)


def spend(world, name: str, hours: float, text: str) -> None:
    """Run an experiment for `hours` so that it has cost something."""
    world.launch(text.format(name=name))
    world.supervisor.reconcile_once()
    exp = world.get(name)
    world.backend.run(exp.id, 1)
    world.supervisor.reconcile_once()
    world.clock.advance(hours=hours)
    world.backend.exit(exp.id, 1, 0)
    world.supervisor.reconcile_once()


def test_a_launch_within_budget_is_queued(world):
    [exp] = world.launch("fits --project nlp --gpus 4 --gpu-type a100 --hours 10 -- python t.py").experiments
    assert world.get("fits").state == State.QUEUED


def test_a_launch_that_would_overrun_waits_for_approval_with_the_numbers(world):
    spend(world, "earlier", 6, "{name} --project nlp --gpus 4 --gpu-type a100 --hours 10 -- python t.py")  # 60 spent
    world.launch("big --project nlp --gpus 4 --gpu-type a100 --hours 10 -- python t.py")  # +100 > 150 - 60
    exp = world.get("big")
    assert exp.state == State.PENDING_APPROVAL
    with world.uow() as uow:
        [request] = [e for e in uow.outbox.for_experiment(exp.id) if e.kind == "ApprovalRequested"]
    assert request.projected_cost == 100.0
    assert request.budgets == [{"scope": "project", "name": "nlp", "limit": 150.0, "spent": 60.0, "committed": 0.0}]
    world.supervisor.reconcile_once()
    assert world.backend.submits[-1].experiment_name != "big"  # nothing starts while it waits


def test_running_experiments_count_as_committed(world):
    world.launch("running --project nlp --gpus 4 --gpu-type a100 --hours 10 -- python t.py")  # commits 100
    world.supervisor.reconcile_once()
    world.launch("second --project nlp --gpus 4 --gpu-type a100 --hours 10 -- python t.py")
    assert world.get("second").state == State.PENDING_APPROVAL


def test_user_budgets_apply_too(world):
    world.launch("bobs --gpus 1 --gpu-type a100 --hours 10 -- python t.py", owner="bob")  # 25 > 20
    assert world.get("bobs").state == State.PENDING_APPROVAL


def test_only_approvers_may_decide_and_every_decision_is_audited(world):
    [exp] = world.launch("big --project nlp --gpus 4 --gpu-type a100 --hours 20 -- python t.py").experiments
    with pytest.raises(NotAllowed):
        world.bus.handle(commands.ApproveLaunch(launch_id=exp.launch_id, by="mallory", as_approver=False))
    assert world.get("big").state == State.PENDING_APPROVAL
    world.bus.handle(commands.ApproveLaunch(launch_id=exp.launch_id, by="carol", as_approver=True))
    assert world.get("big").state == State.QUEUED
    world.supervisor.reconcile_once()
    assert world.get("big").state == State.STARTING
    with world.uow() as uow:
        [entry] = uow.audit.entries(experiment_id=exp.id)
    assert entry["actor"] == "carol" and entry["action"] == "approve"


def test_deny_rejects_the_whole_sweep(world):
    result = world.launch("sw --project nlp --gpus 4 --gpu-type a100 --hours 10 --sweep lr=1,2 -- python t.py")
    assert {world.get(e.name).state for e in result.experiments} == {State.PENDING_APPROVAL}
    world.bus.handle(commands.DenyLaunch(launch_id=result.experiments[0].launch_id, by="carol", as_approver=True,
                                         reason="too big this month"))
    assert {world.get(e.name).state for e in result.experiments} == {State.REJECTED}
    assert world.get("sw-1").state_reason == "too big this month"


def test_unanswered_requests_expire_as_denied(world):
    world.launch("late --project nlp --gpus 4 --gpu-type a100 --hours 20 -- python t.py")
    world.clock.advance(hours=23)
    assert world.bus.handle(commands.ExpireApprovals()) == 0
    world.clock.advance(hours=1)
    assert world.bus.handle(commands.ExpireApprovals()) == 1
    exp = world.get("late")
    assert exp.state == State.REJECTED and "expired" in exp.state_reason
    with world.uow() as uow:
        assert [e["action"] for e in uow.audit.entries(experiment_id=exp.id)] == ["expire"]


def test_admins_set_budgets_at_runtime(world):
    with pytest.raises(NotAllowed):
        world.bus.handle(commands.SetBudget(scope="project", name="nlp", monthly_limit=1e6, by="bob"))
    world.bus.handle(commands.SetBudget(scope="project", name="nlp", monthly_limit=1000.0, by="admin", as_admin=True))
    world.launch("now-fits --project nlp --gpus 4 --gpu-type a100 --hours 20 -- python t.py")
    assert world.get("now-fits").state == State.QUEUED


@pytest.mark.parametrize("scope, name, amount, says", [
    ("project", "nlp", float("inf"), "zero or more"),
    ("project", "nlp", float("nan"), "zero or more"),
    ("project", "nlp", -100.0, "zero or more"),
    ("project", "NLP", 100.0, "lowercase"),  # launches refuse such a project: the budget would match nothing
    ("project", "my project", 100.0, "lowercase"),
    ("project", "p" * 64, 100.0, "up to 63"),
    ("user", "", 100.0, "not a user name"),
    ("user", "ana smith", 100.0, "not a user name"),
])
def test_a_budget_that_could_never_apply_is_refused_and_nothing_is_stored(world, scope, name, amount, says):
    with pytest.raises(ExpbotError, match=says):
        world.bus.handle(commands.SetBudget(scope=scope, name=name, monthly_limit=amount, by="admin", as_admin=True))
    with world.uow() as uow:
        assert uow.budgets.overrides() == {} and uow.audit.entries(action="budget-set") == []


def test_a_zero_budget_is_allowed_every_launch_then_needs_approval(world):
    world.bus.handle(commands.SetBudget(scope="user", name="ana", monthly_limit=0.0, by="admin", as_admin=True))
    world.launch("tiny --gpus 1 --gpu-type t4 --hours 1 -- python t.py", owner="ana")
    assert world.get("tiny").state == State.PENDING_APPROVAL


def test_alerts_fire_once_per_threshold_per_month(world):
    spend(world, "a", 8, "{name} --project nlp --gpus 4 --gpu-type a100 --hours 10 -- python t.py")  # 80 of 150
    first = due_alerts(world.uow, BUDGETS, world.clock)
    assert [(a.scope, a.name, a.threshold) for a in first] == [("project", "nlp", 50)]
    assert due_alerts(world.uow, BUDGETS, world.clock) == []
    spend(world, "b", 4, "{name} --project nlp --gpus 4 --gpu-type a100 --hours 5 -- python t.py")  # 120 of 150
    assert [a.threshold for a in due_alerts(world.uow, BUDGETS, world.clock)] == [80]


def test_month_window_follows_the_configured_time_zone():
    # 23:30 UTC on Nov 30 is already December in Berlin.
    now = datetime(2026, 11, 30, 23, 30, tzinfo=timezone.utc)
    start, end, label = month_window(now, "Europe/Berlin")
    assert label == "2026-12"
    assert start == datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    assert end == datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
       st.sampled_from(["UTC", "America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham"]))
def test_every_instant_lies_in_exactly_its_local_month(now, tz):
    start, end, label = month_window(now, tz)
    assert start <= now < end
    local = now.astimezone(ZoneInfo(tz))
    assert label == f"{local.year:04d}-{local.month:02d}"
    assert start.astimezone(ZoneInfo(tz)).day == 1 and end.astimezone(ZoneInfo(tz)).day == 1


@given(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=80))
def test_a_sweep_needs_approval_exactly_when_its_summed_projection_overruns(members, gpus, limit):
    world = make_world(budgets=BudgetConfig(projects={"p": float(limit)}))
    values = ",".join(str(i) for i in range(members))
    world.launch(f"sw --project p --gpus {gpus} --gpu-type a100 --hours 1 --sweep k={values} -- python t.py")
    projected = members * gpus * 2.5  # a100: 2.5 per GPU-hour, one hour each
    states = {world.get(f"sw-{i}").state for i in range(1, members + 1)}
    assert states == ({State.PENDING_APPROVAL} if projected > limit else {State.QUEUED})


def test_a_restart_of_expbot_neither_loses_nor_double_counts_time():
    from core.supervisor import Supervisor

    world = make_world()
    world.launch("metered --gpus 2 --gpu-type a100 -- python t.py")  # 5 per hour
    world.supervisor.reconcile_once()
    exp = world.get("metered")
    world.backend.run(exp.id, 1)
    world.supervisor.reconcile_once()
    world.clock.advance(hours=1)
    # expbot restarts: a new supervisor over the same store and cluster, time goes on meanwhile.
    restarted = Supervisor(world.supervisor.uow_factory, world.backend, world.clock, prices=world.supervisor.prices)
    world.clock.advance(hours=2)
    restarted.reconcile_once()
    world.clock.advance(hours=1)
    world.backend.exit(exp.id, 1, 0)
    restarted.reconcile_once()
    restarted.reconcile_once()
    exp = world.get("metered")
    assert exp.state == State.SUCCEEDED
    assert exp.cost(world.clock.now() + timedelta(days=1)) == pytest.approx(4 * 5.0)
    with world.uow() as uow:
        spent = uow.costs.spent(start=exp.created_at, end=world.clock.now() + timedelta(days=1), now=world.clock.now())
    assert spent == pytest.approx(20.0)
