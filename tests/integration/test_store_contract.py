"""The store contract: the fake, SQLite and PostgreSQL must behave exactly alike."""
from __future__ import annotations

from datetime import timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from adapters.db import rows  # noqa: F401  (the tables, in SQLModel.metadata)
from adapters.db.engine import make_engine, make_session_factory
from adapters.db.migrate import current_revision, head_revision, upgrade
from adapters.db.uow import SqlUnitOfWork
from core.errors import ConcurrentUpdate, DuplicateLaunch
from core.events import Event, ExperimentLaunched
from core.model import Experiment, FailureClass, State
from tests.integration.conftest import Store, at, new_experiment


def supervised(name: str = "train-a", **kwargs: object) -> Experiment:
    """An experiment that ran once, was preempted and waits to restart from a checkpoint."""
    exp = new_experiment(name, **kwargs)
    exp.start_attempt(None, at(1))
    exp.mark_running(at(2))
    exp.end_attempt(143, "preempted", FailureClass.INFRA, at(30))
    exp.schedule_restart(at(31), "infra", "node preempted", "ckpt/step-900", at(30))
    return exp


# --- round trips -------------------------------------------------------------------------------
def test_every_field_round_trips(store: Store) -> None:
    exp = supervised(
        "sweep-lr-1", key="slack:T1:abc", gpus=2, gpu_type="a100", cpu="8", memory="32Gi",
        max_runtime=timedelta(hours=6, minutes=30), retry_on_exit_codes=frozenset({75, 99}),
        env={"LR": "0.1", "WANDB_MODE": "offline"}, project="vision", checkpoint_glob="*.pt",
        stall_timeout=timedelta(minutes=20), give_up_patterns=("CUDA out of memory",),
        group="sweep-lr", sweep_values={"lr": "0.1"},
    )
    store.save(exp)
    assert exp.version == 1 and exp.events == []

    with store.new_uow() as uow:
        loaded = uow.experiments.get(exp.id)
        assert loaded is not None and loaded is not exp
        assert loaded == exp  # every dataclass field, attempts included
        assert loaded.spec == exp.spec
        assert isinstance(loaded.spec.retry_on_exit_codes, frozenset)
        assert isinstance(loaded.spec.command, tuple)
        assert loaded.next_attempt_at == at(31) and loaded.next_attempt_at.utcoffset() == timedelta(0)
        assert loaded.attempts[0].failure_class is FailureClass.INFRA
        # The next attempt, stopped by a person: attempts are updated and added.
        loaded.start_attempt("ckpt/step-900", at(32))
        loaded.mark_running(at(33))
        loaded.stop("bob", "no longer needed", at(40))
        uow.commit()
        expected = loaded

    with store.new_uow() as uow:
        again = uow.experiments.get(exp.id)
        assert again == expected and again.version == 2
        assert again.state is State.STOPPED and again.stopped_by == "bob"
        assert [a.resumed_from for a in again.attempts] == [None, "ckpt/step-900"]
        assert uow.experiments.get("no-such-id") is None


def test_get_by_name_returns_the_newest(store: Store) -> None:
    old, new = new_experiment("bert", created=at(0)), new_experiment("bert", created=at(60))
    old.fail("bad config", at(5))
    store.save(new, old)
    with store.new_uow() as uow:
        assert uow.experiments.get_by_name("bert").id == new.id
        assert uow.experiments.get_by_name("gpt") is None


def test_get_by_idempotency_key(store: Store) -> None:
    keyed, other = new_experiment("a", key="k-1"), new_experiment("b", key="k-2")
    store.save(keyed, other)
    with store.new_uow() as uow:
        assert uow.experiments.get_by_idempotency_key("k-1").id == keyed.id
        assert uow.experiments.get_by_idempotency_key("k-3") is None


def test_by_launch_returns_a_sweep_group_in_member_order(store: Store) -> None:
    members = [new_experiment(f"sw-{i}", group="sw") for i in (1, 2, 10, 3)]
    for member in members:
        member.launch_id, member.channel = "launch-1", "C123"
    loner = new_experiment("solo")
    store.save(*members, loner)
    with store.new_uow() as uow:
        group = uow.experiments.by_launch("launch-1")
        assert [e.name for e in group] == ["sw-1", "sw-2", "sw-3", "sw-10"]
        assert {e.channel for e in group} == {"C123"}
        # An experiment launched alone is its own launch, reachable by its id.
        assert [e.name for e in uow.experiments.by_launch(loner.id)] == ["solo"]
        assert uow.experiments.get(loner.id).channel is None


def test_list_filters_newest_first(store: Store) -> None:
    a = new_experiment("a", created=at(0), owner="alice", project="nlp")
    b = new_experiment("b", created=at(1), owner="bob", project="nlp", group="g1")
    c = new_experiment("c", created=at(2), owner="alice", project="vision", group="g1")
    d = new_experiment("d", created=at(3), owner="alice", project="nlp")
    d.start_attempt(None, at(4))
    a.fail("gave up", at(5))
    store.save(a, b, c, d)

    def ids(**filters: object) -> list[str]:
        with store.new_uow() as uow:
            return [e.name for e in uow.experiments.list(**filters)]

    assert ids() == ["d", "c", "b", "a"]
    assert ids(owner="alice") == ["d", "c", "a"]
    assert ids(project="nlp") == ["d", "b", "a"]
    assert ids(group="g1") == ["c", "b"]
    assert ids(states=[State.QUEUED]) == ["c", "b"]
    assert ids(states={State.STARTING, State.FAILED}) == ["d", "a"]
    assert ids(states=[]) == []
    assert ids(owner="alice", project="nlp", states=[State.FAILED]) == ["a"]
    assert ids(limit=2) == ["d", "c"]
    assert ids(owner="carol") == []
    with store.new_uow() as uow:
        listed = uow.experiments.list()
        assert [len(e.attempts) for e in listed] == [1, 0, 0, 0]
        assert uow.experiments.get(d.id) is listed[0]  # one object per experiment per unit of work


def test_active_is_oldest_first_and_non_terminal(store: Store) -> None:
    done = new_experiment("done", created=at(0))
    done.fail("gave up", at(1))
    first, second = new_experiment("first", created=at(2)), new_experiment("second", created=at(3))
    restarting = supervised("restarting", created=at(1))
    store.save(second, done, restarting, first)
    with store.new_uow() as uow:
        assert [e.name for e in uow.experiments.active()] == ["restarting", "first", "second"]


# --- transactions ------------------------------------------------------------------------------
def test_duplicate_idempotency_key_is_refused_and_nothing_is_stored(store: Store) -> None:
    original = new_experiment("a", key="slack:retry")
    store.save(original)
    innocent, retried = new_experiment("b", key="other"), new_experiment("a", key="slack:retry")
    with store.new_uow() as uow:
        uow.experiments.add(innocent)
        uow.experiments.add(retried)
        with pytest.raises(DuplicateLaunch) as caught:
            uow.commit()
        assert caught.value.idempotency_key == "slack:retry"
    with store.new_uow() as uow:
        assert [e.id for e in uow.experiments.list()] == [original.id]
        assert [e.experiment_id for e in uow.outbox.pending()] == [original.id]


def test_same_key_twice_in_one_commit_is_refused(store: Store) -> None:
    with store.new_uow() as uow:
        uow.experiments.add(new_experiment("a", key="k"))
        uow.experiments.add(new_experiment("b", key="k"))
        with pytest.raises(DuplicateLaunch):
            uow.commit()
    with store.new_uow() as uow:
        assert uow.experiments.list() == []


def test_second_writer_of_the_same_experiment_gets_concurrent_update(store: Store) -> None:
    exp = new_experiment("race")
    store.save(exp)
    first, second = store.new_uow(), store.new_uow()
    with first, second:
        mine, theirs = first.experiments.get(exp.id), second.experiments.get(exp.id)
        mine.start_attempt(None, at(1))
        theirs.stop("bob", "stop it", at(1))
        first.commit()
        with pytest.raises(ConcurrentUpdate):
            second.commit()
    with store.new_uow() as uow:
        saved = uow.experiments.get(exp.id)
        assert saved.state is State.STARTING and saved.version == 2
        assert [type(e).__name__ for e in uow.outbox.for_experiment(exp.id)] == [
            "ExperimentLaunched", "AttemptStarted"
        ]


def test_unchanged_loaded_experiments_do_not_conflict(store: Store) -> None:
    a, b = new_experiment("a", created=at(0)), new_experiment("b", created=at(1))
    store.save(a, b)
    reader, writer = store.new_uow(), store.new_uow()
    with reader, writer:
        assert len(reader.experiments.list()) == 2  # loads both, changes only a
        writer.experiments.get(b.id).stop("bob", "done", at(2))
        writer.commit()
        reader.experiments.get(a.id).start_attempt(None, at(3))
        reader.commit()  # b was loaded but not changed: not written, no conflict
    with store.new_uow() as uow:
        assert uow.experiments.get(a.id).state is State.STARTING
        assert uow.experiments.get(b.id).state is State.STOPPED


def test_exiting_without_commit_stores_nothing(store: Store) -> None:
    kept = new_experiment("kept")
    store.save(kept)
    uow = store.new_uow()
    with uow:
        uow.experiments.add(new_experiment("dropped"))
        uow.experiments.get(kept.id).stop("bob", "changed my mind", at(1))
    with uow:  # re-entered: a fresh unit of work
        assert [e.name for e in uow.experiments.list()] == ["kept"]
        assert uow.experiments.get(kept.id).state is State.QUEUED
        uow.experiments.get(kept.id).stop("bob", "really", at(2))
        uow.rollback()
        assert uow.experiments.get(kept.id).state is State.QUEUED
    assert uow.committed == 0


def test_commit_can_follow_commit(store: Store) -> None:
    exp = new_experiment("twice")
    with store.new_uow() as uow:
        uow.experiments.add(exp)
        uow.commit()
        exp.start_attempt(None, at(1))
        uow.commit()
        uow.commit()  # nothing changed: nothing written
    with store.new_uow() as uow:
        assert uow.experiments.get(exp.id).version == 2


# --- events and the outbox ---------------------------------------------------------------------
def test_events_are_stored_with_the_change_and_delivered_once(store: Store) -> None:
    exp = new_experiment("evented")
    exp.start_attempt(None, at(0))  # same occurred_at as ExperimentLaunched: order must hold
    emitted = list(exp.events)
    with store.new_uow() as uow:
        uow.experiments.add(exp)
        uow.commit()
        assert exp.events == []
        assert list(uow.collect_new_events()) == emitted
        assert list(uow.collect_new_events()) == []

    other = new_experiment("other", created=at(1))
    other_emitted = list(other.events)
    store.save(other)
    with store.new_uow() as uow:
        pending = uow.outbox.pending()
        assert pending == [*emitted, *other_emitted]
        assert uow.outbox.pending(limit=1) == emitted[:1]
        stored = pending[0]
        assert Event.from_stored(stored.kind, stored.payload()) == emitted[0]
        assert isinstance(stored, ExperimentLaunched) and stored.occurred_at == at(0)
        uow.outbox.mark_delivered(emitted[0].event_id, at(5))
        uow.outbox.mark_delivered(emitted[0].event_id, at(6))  # at least once: harmless again
    with store.new_uow() as uow:  # durable without a commit, like a delivery itself
        assert uow.outbox.pending() == [emitted[1], *other_emitted]
        assert uow.outbox.for_experiment(exp.id) == emitted
        assert uow.outbox.for_experiment("nobody") == []


def test_events_alone_make_a_change(store: Store) -> None:
    exp = new_experiment("quiet")
    store.save(exp)
    with store.new_uow() as uow:
        loaded = uow.experiments.get(exp.id)
        loaded.launched(at(9))  # an event, no field change
        uow.commit()
        assert loaded.version == 2
    with store.new_uow() as uow:
        assert len(uow.outbox.for_experiment(exp.id)) == 2


# --- SQL only: files shared between processes, timestamps, query counts, migrations -------------
def test_another_engine_on_the_same_file_sees_committed_data(sqlite_store: Store) -> None:
    store = sqlite_store
    other_engine = make_engine(store.url)  # what another process (the CLI) would open
    try:
        other = SqlUnitOfWork(make_session_factory(other_engine))
        with other:  # a reader open across the writer's commit must not block it
            assert other.experiments.list() == []
            store.save(new_experiment("shared"))
        with other:
            assert [e.name for e in other.experiments.list()] == ["shared"]
            other.experiments.get_by_name("shared").start_attempt(None, at(1))
            other.commit()
        with store.new_uow() as uow:
            assert uow.experiments.get_by_name("shared").state is State.STARTING
        with other_engine.connect() as conn:
            pragma = conn.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() > 0
    finally:
        other_engine.dispose()


def test_times_come_back_utc_and_naive_times_are_refused(sql_store: Store) -> None:
    store = sql_store
    cest = timezone(timedelta(hours=2))
    exp = new_experiment("tz", created=at(0).astimezone(cest))
    store.save(exp)
    with store.new_uow() as uow:
        loaded = uow.experiments.get(exp.id)
        assert loaded.created_at == at(0) and loaded.created_at.tzinfo == timezone.utc
    naive = new_experiment("naive", created=at(0).replace(tzinfo=None))
    naive.events = []
    with pytest.raises(Exception, match="naive datetime"):
        store.save(naive)


def test_listing_reads_attempts_in_the_same_query(sql_store: Store) -> None:
    store, engine = sql_store, sql_store.engine
    store.save(*(supervised(f"exp-{i}", created=at(i)) for i in range(5)))
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        with store.new_uow() as uow:
            assert all(len(e.attempts) == 1 for e in uow.experiments.list())
            assert all(len(e.attempts) == 1 for e in uow.experiments.active())
            assert len(uow.experiments.get_by_name("exp-3").attempts) == 1
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 3, statements


def test_migrations_build_exactly_the_declared_schema(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    upgrade(db_url)  # idempotent: already at head
    assert current_revision(db_url) == head_revision() == "0009"
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_upgrade_from_0001_keeps_rows_and_backfills_launch_ids(db_url: str) -> None:
    upgrade(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO experiment (id, name, owner, project, state, state_reason, spec, created_at, "
                "user_restarts, infra_restarts, free_restarts, version) VALUES ('old-1', 'old', 'ana', "
                "'default', 'SUCCEEDED', '', :spec, :created, 0, 0, 0, 1)"),
                {"spec": '{"name": "old", "command": ["true"], "image": "img"}', "created": at(0)},
            )
        upgrade(db_url)
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT launch_id, channel FROM experiment WHERE id = 'old-1'")).one()
        assert tuple(row) == ("old-1", None)
    finally:
        engine.dispose()


def test_in_memory_sqlite_migrated_through_its_engine() -> None:
    engine = make_engine("sqlite://")  # one shared connection: every other one is another database
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        uow = SqlUnitOfWork(make_session_factory(engine))
        with uow:
            uow.experiments.add(new_experiment("memory"))
            uow.commit()
        with uow:
            assert [e.name for e in uow.experiments.list()] == ["memory"]
    finally:
        engine.dispose()
