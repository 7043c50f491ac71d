"""One active experiment per name, enforced by the store (fake, SQLite, PostgreSQL alike)."""
from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from adapters.db import rows
from adapters.db.engine import make_engine
from adapters.db.migrate import upgrade
from core import commands, handlers
from core.errors import NameInUse
from core.lookup import find_experiment
from core.model import ACTIVE, State
from core.spec import LaunchConfig
from tests.fakes.backend import FakeBackend
from tests.fakes.clock import FakeClock
from tests.integration.conftest import Store, at, new_experiment


def test_the_index_knows_the_active_states() -> None:
    assert set(rows.ACTIVE_STATES) == {str(s) for s in ACTIVE}


def test_a_second_active_experiment_with_a_name_is_refused(store: Store) -> None:
    store.save(new_experiment("bert"))
    with store.new_uow() as uow:
        uow.experiments.add(new_experiment("bert", created=at(5)))
        with pytest.raises(NameInUse, match="'bert'"):
            uow.commit()
    with store.new_uow() as uow:
        assert len(uow.experiments.list()) == 1


def test_an_ended_name_can_be_used_again(store: Store) -> None:
    old = new_experiment("bert")
    old.fail("bad config", at(1))
    store.save(old)
    store.save(new_experiment("bert", created=at(5)))
    with store.new_uow() as uow:
        assert [e.state for e in uow.experiments.list()] == [State.QUEUED, State.FAILED]


def test_find_by_name_id_or_unique_id_prefix(store: Store) -> None:
    a, b = new_experiment("alpha"), new_experiment("beta", created=at(1))
    a.id, b.id = "abcd1111" + a.id[8:], "abcd2222" + b.id[8:]
    store.save(a, b)
    with store.new_uow() as uow:
        assert find_experiment(uow.experiments, "beta").id == b.id
        assert find_experiment(uow.experiments, a.id).id == a.id
        assert find_experiment(uow.experiments, "abcd22").id == b.id
        with pytest.raises(Exception, match="more than one"):
            find_experiment(uow.experiments, "abcd")
        with pytest.raises(Exception, match="no experiment named 'abc'"):
            find_experiment(uow.experiments, "abc")  # too short to be taken as a prefix
        assert uow.experiments.by_id_prefix("abcd%") == []  # no LIKE wildcards


@pytest.mark.parametrize("round_", range(20))
def test_concurrent_launches_of_one_name_make_one_experiment(store: Store, round_: int) -> None:
    backend, clock, config = FakeBackend(gpus=8), FakeClock(), LaunchConfig()
    name = f"race-{round_}"
    results: list[object] = []
    go = threading.Barrier(3)

    def launch() -> None:
        go.wait()
        try:
            handlers.launch(commands.LaunchExperiment(text=f"{name} -- true", owner="ana",
                                                      idempotency_key=uuid.uuid4().hex),
                            store.new_uow(), config=config, backend=backend, clock=clock)
            results.append("launched")
        except NameInUse as e:
            results.append(e)

    threads = [threading.Thread(target=launch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results.count("launched") == 1, results
    assert all("already" in str(r) for r in results if r != "launched")
    with store.new_uow() as uow:
        assert len(uow.experiments.list()) == 1


def test_upgrade_stops_older_duplicates_a_race_left_behind(db_url: str) -> None:
    upgrade(db_url, "0005")
    engine = make_engine(db_url)
    insert = sa.text(
        "INSERT INTO experiment (id, name, owner, project, state, state_reason, spec, created_at, "
        "user_restarts, infra_restarts, free_restarts, version, launch_id) VALUES (:id, 'bert', 'ana', "
        "'default', :state, '', :spec, :created, 0, 0, 0, 1, :id)")
    spec = '{"name": "bert", "command": ["true"], "image": "img"}'
    try:
        with engine.begin() as conn:
            for exp_id, state, minute in (("old", "RUNNING", 0), ("new", "QUEUED", 5), ("done", "FAILED", 1)):
                conn.execute(insert, {"id": exp_id, "state": state, "spec": spec, "created": at(minute * 60)})
        upgrade(db_url)
        with engine.connect() as conn:
            found = dict(conn.execute(sa.text("SELECT id, state FROM experiment")).all())
        assert found == {"old": "STOPPED", "new": "QUEUED", "done": "FAILED"}
    finally:
        engine.dispose()
