"""Core wired to fakes: an in-memory store, a scripted cluster and a hand-driven clock."""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import timedelta

import pytest

from core import commands, handlers
from core.bus import MessageBus
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

    def events(self, name: str) -> list[str]:
        exp = self.get(name)
        with self.uow() as uow:
            return [e.kind for e in uow.outbox.for_experiment(exp.id)]


@pytest.fixture
def world() -> World:
    db, clock = FakeDatabase(), FakeClock()
    backend = FakeBackend(gpus=4, clock=clock)
    uow_factory = functools.partial(FakeUnitOfWork, db)
    backoff = Backoff(base=timedelta(seconds=10), cap=timedelta(minutes=5), jitter=0.0)
    supervisor = Supervisor(uow_factory, backend, clock, backoff=backoff, rng=random.Random(0))
    bus = MessageBus(uow_factory, {
        commands.LaunchExperiment: functools.partial(
            handlers.launch, config=LaunchConfig(), backend=backend, clock=clock),
        commands.StopExperiment: functools.partial(
            handlers.stop, backend=backend, clock=clock, grace=timedelta(seconds=5)),
    })
    return World(db, clock, backend, bus, supervisor)
