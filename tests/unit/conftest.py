"""Core wired to fakes: an in-memory store, a scripted cluster and a hand-driven clock."""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import timedelta

import pytest

from core import approvals, commands, handlers
from core.budget import BudgetConfig
from core.cost import Prices
from core.bus import MessageBus
from core.messages import describe
from core.policy import Backoff
from core.spec import LaunchConfig
from core.supervisor import Supervisor
from tests.fakes.backend import FakeBackend
from tests.fakes.clock import FakeClock
from tests.fakes.store import FakeDatabase, FakeUnitOfWork


@dataclass
class World:
    db: FakeDatabase
    clock: FakeClock
    backend: FakeBackend
    bus: MessageBus
    supervisor: Supervisor

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.db)

    def launch(self, text: str, owner: str = "ana", key: str | None = None):
        return self.bus.handle(commands.LaunchExperiment(text=text, owner=owner, idempotency_key=key))

    def get(self, name: str):
        with self.uow() as uow:
            return uow.experiments.get_by_name(name)

    def texts(self, name: str) -> list[str]:
        """Every event of the experiment as its thread would say it."""
        exp = self.get(name)
        with self.uow() as uow:
            return [describe(e) for e in uow.outbox.for_experiment(exp.id)]

    def events(self, name: str) -> list[str]:
        exp = self.get(name)
        with self.uow() as uow:
            return [e.kind for e in uow.outbox.for_experiment(exp.id)]


@pytest.fixture
def world() -> World:
    return make_world()


def make_world(budgets: BudgetConfig | None = None, prices: Prices | None = None) -> World:
    """Core on fakes; with budgets, launches are admitted against them and approvals are handled."""
    db, clock = FakeDatabase(), FakeClock()
    backend = FakeBackend(gpus=4, clock=clock)
    uow_factory = functools.partial(FakeUnitOfWork, db)
    backoff = Backoff(base=timedelta(seconds=10), cap=timedelta(minutes=5), jitter=0.0)
    prices = prices or Prices(gpu_catalog=LaunchConfig().gpu_catalog)
    supervisor = Supervisor(uow_factory, backend, clock, backoff=backoff, rng=random.Random(0), prices=prices,
                            stop_in_background=False)
    bus = MessageBus(uow_factory, {
        commands.LaunchExperiment: functools.partial(
            handlers.launch, config=LaunchConfig(), backend=backend, clock=clock, prices=prices, budgets=budgets),
        commands.ApproveLaunch: functools.partial(approvals.approve, clock=clock),
        commands.DenyLaunch: functools.partial(approvals.deny, clock=clock),
        commands.ExpireApprovals: functools.partial(approvals.expire, clock=clock, config=budgets or BudgetConfig()),
        commands.SetBudget: functools.partial(approvals.set_budget, clock=clock),
        commands.StopExperiment: functools.partial(
            handlers.stop, backend=backend, clock=clock, grace=timedelta(seconds=5)),
    })
    return World(db, clock, backend, bus, supervisor)
