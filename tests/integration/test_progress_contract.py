"""Progress store: the same contract on the fake, SQLite and PostgreSQL."""
from __future__ import annotations

import threading
from datetime import timedelta, timezone

import pytest
import sqlalchemy as sa

from adapters.db.engine import make_session_factory
from adapters.db.progress import PROGRESS, SqlProgressStore
from core.progress import ProgressReport, ProgressStore
from tests.fakes.progress import FakeProgressStore
from tests.integration.conftest import Store, at


@pytest.fixture
def progress(store: Store) -> ProgressStore:
    """SqlProgressStore on the store's database, or FakeProgressStore for the fake."""
    if store.kind == "fake":
        return FakeProgressStore()
    assert store.engine is not None
    return SqlProgressStore(make_session_factory(store.engine))


def report(minutes: float, experiment_id: str = "e1", attempt: int = 1, checkpoint: str | None = None,
           step: int | None = None) -> ProgressReport:
    return ProgressReport(experiment_id, attempt, at(minutes), checkpoint=checkpoint, step=step)


def test_nothing_reported_reads_as_nothing(progress) -> None:
    assert progress.latest_checkpoint("e1") is None
    assert progress.heartbeats(at(0) - timedelta(days=365)) == {}


def test_every_report_is_a_heartbeat_and_a_checkpoint_outlives_later_heartbeats(progress) -> None:
    progress.record(report(1, step=10))
    assert progress.heartbeats(at(0)) == {("e1", 1): at(1)}
    assert progress.latest_checkpoint("e1") is None
    progress.record(report(2, checkpoint="/ck/ckpt-000020.json", step=20))
    progress.record(report(3, step=30))  # a plain heartbeat keeps the checkpoint
    assert progress.latest_checkpoint("e1") == "/ck/ckpt-000020.json"
    assert progress.heartbeats(at(0)) == {("e1", 1): at(3)}


def test_times_read_back_timezone_aware_and_exact(progress) -> None:
    odd = timezone(timedelta(hours=5, minutes=30))
    when = at(1).replace(microsecond=123456).astimezone(odd)
    progress.record(ProgressReport("e1", 1, when, checkpoint="/ck/a"))
    (beat,) = progress.heartbeats(at(0)).values()
    assert beat == when and beat.tzinfo is not None and beat.utcoffset() == timedelta(0)


def test_newer_checkpoints_replace_older_ones_but_never_the_other_way(progress) -> None:
    progress.record(report(1, checkpoint="/ck/1"))
    progress.record(report(5, checkpoint="/ck/5"))
    progress.record(report(3, checkpoint="/ck/3"))  # arrived late (a slow request): older, ignored
    assert progress.latest_checkpoint("e1") == "/ck/5"
    progress.record(report(5, checkpoint="/ck/5b"))  # the same time replaces (>=)
    assert progress.latest_checkpoint("e1") == "/ck/5b"
    assert progress.heartbeats(at(0)) == {("e1", 1): at(5)}  # a late heartbeat never moves it back


def test_the_newest_checkpoint_of_any_attempt_wins_and_ties_go_to_the_higher_attempt(progress) -> None:
    progress.record(report(1, attempt=1, checkpoint="/ck/a1-early"))
    progress.record(report(2, attempt=2, checkpoint="/ck/a2"))
    assert progress.latest_checkpoint("e1") == "/ck/a2"
    progress.record(report(3, attempt=1, checkpoint="/ck/a1-late"))  # a slow pod of attempt 1, still writing
    assert progress.latest_checkpoint("e1") == "/ck/a1-late"
    progress.record(report(4, attempt=3, checkpoint="/ck/a3"))
    progress.record(report(4, attempt=2, checkpoint="/ck/a2-tie"))
    assert progress.latest_checkpoint("e1") == "/ck/a3"


def test_experiments_never_see_each_others_checkpoints(progress) -> None:
    progress.record(report(1, experiment_id="e1", checkpoint="/ck/e1"))
    progress.record(report(2, experiment_id="e10", checkpoint="/ck/e10"))
    progress.record(report(3, experiment_id="e2"))
    assert progress.latest_checkpoint("e1") == "/ck/e1"
    assert progress.latest_checkpoint("e10") == "/ck/e10"
    assert progress.latest_checkpoint("e2") is None
    assert progress.latest_checkpoint("e") is None


def test_heartbeats_since_is_inclusive_and_covers_every_attempt(progress) -> None:
    progress.record(report(1, experiment_id="old"))
    progress.record(report(10, experiment_id="e1", attempt=1))
    progress.record(report(12, experiment_id="e1", attempt=2, checkpoint="/ck/x"))
    progress.record(report(15, experiment_id="e2", attempt=4))
    assert progress.heartbeats(at(10)) == {("e1", 1): at(10), ("e1", 2): at(12), ("e2", 4): at(15)}
    assert progress.heartbeats(at(12.5)) == {("e2", 4): at(15)}
    assert progress.heartbeats(at(16)) == {}


def test_concurrent_reports_keep_the_newest(progress) -> None:
    barrier = threading.Barrier(8)

    def send(n: int) -> None:
        barrier.wait()
        for i in range(10):
            minute = n * 10 + i
            progress.record(report(minute, checkpoint=f"/ck/{minute}" if i % 2 else None))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert progress.heartbeats(at(0)) == {("e1", 1): at(79)}
    assert progress.latest_checkpoint("e1") == "/ck/79"


# --- SQL only ------------------------------------------------------------------------------------
def test_the_last_step_is_kept_and_heartbeats_is_one_query(sql_store: Store) -> None:
    engine = sql_store.engine
    progress = SqlProgressStore(make_session_factory(engine))
    progress.record(report(1, step=2**40))
    progress.record(report(2))  # no step: the last one is kept
    progress.record(report(0.5, step=1))  # older: ignored
    with engine.connect() as conn:
        assert conn.execute(sa.select(PROGRESS.c.step)).scalar_one() == 2**40
    for n in range(500):
        progress.record(report(3, experiment_id=f"exp-{n}", attempt=1 + n % 3))
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        beats = progress.heartbeats(at(2.5))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(beats) == 500 and beats[("exp-7", 2)] == at(3)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements
