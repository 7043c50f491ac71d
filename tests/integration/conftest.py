"""Fixtures for integration tests: the store under contract (fake, SQLite, PostgreSQL)."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from adapters.db.engine import make_engine, make_session_factory
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWork
from core.model import Experiment
from core.ports import UnitOfWork
from core.spec import ExperimentSpec
from tests.fakes.store import FakeDatabase, FakeUnitOfWork
from tests.integration.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    """T0 plus some minutes: explicit, timezone-aware test times."""
    return T0 + timedelta(minutes=minutes)


def make_spec(name: str = "train-a", **overrides: object) -> ExperimentSpec:
    """A resolved spec; every field can be overridden."""
    fields: dict[str, object] = {"name": name, "command": ("python", "train.py"), "image": "py:3.11"}
    fields.update(overrides)
    return ExperimentSpec.model_validate(fields)


def new_experiment(
    name: str = "train-a",
    *,
    created: datetime = T0,
    owner: str = "alice",
    key: str | None = None,
    **spec_overrides: object,
) -> Experiment:
    """A freshly launched experiment (carrying its ExperimentLaunched event)."""
    exp = Experiment(
        id=uuid.uuid4().hex[:12], spec=make_spec(name, **spec_overrides), owner=owner,
        created_at=created, idempotency_key=key,
    )
    exp.launched(created)
    return exp


@dataclass
class Store:
    """One implementation of the store ports, and a way to open units of work on it."""

    kind: str
    new_uow: Callable[[], UnitOfWork]
    url: str | None = None
    engine: Engine | None = None

    def save(self, *experiments: Experiment) -> None:
        """Add and commit experiments in one unit of work."""
        with self.new_uow() as uow:
            for exp in experiments:
                uow.experiments.add(exp)
            uow.commit()


def _open_sql_store(kind: str, url: str) -> Iterator[Store]:
    """A migrated database at `url`, and units of work on it."""
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        yield Store(kind, lambda: SqlUnitOfWork(factory), url, engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["fake", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each implementation of the store ports in turn: the same tests must pass on all."""
    if request.param == "fake":
        db = FakeDatabase()
        yield Store("fake", lambda: FakeUnitOfWork(db))
    elif request.param == "sqlite":
        yield from _open_sql_store("sqlite", f"sqlite:///{tmp_path / 'state' / 'expbot.db'}")
    else:
        yield from _open_sql_store("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The SQL implementations only, for what the fake has no notion of (types, queries)."""
    if request.param == "sqlite":
        yield from _open_sql_store("sqlite", f"sqlite:///{tmp_path / 'expbot.db'}")
    else:
        yield from _open_sql_store("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite file."""
    yield from _open_sql_store("sqlite", f"sqlite:///{tmp_path / 'expbot.db'}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL (not migrated), SQLite or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'expbot.db'}"
    return str(request.getfixturevalue("postgres_url"))
