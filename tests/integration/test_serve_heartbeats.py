"""The serve heartbeat store on SQLite and PostgreSQL: beats, staleness by each serve's own interval, forgetting."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from adapters.db.engine import make_session_factory
from adapters.db.serve_heartbeats import ServeBeat, SqlServeHeartbeats, stale_after
from tests.integration.conftest import T0, Store


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def beat(instance: str, at_second: float, interval: float = 5.0, backend: str = "local") -> ServeBeat:
    return ServeBeat(instance=instance, backend=backend, host="box", pid=4242, started_at=at(0),
                     beat_at=at(at_second), interval_seconds=interval)


def test_a_serve_is_alive_until_it_misses_beats_and_a_clean_stop_forgets_it(sql_store: Store) -> None:
    beats = SqlServeHeartbeats(make_session_factory(sql_store.engine))
    assert beats.alive(at(0)) == []  # nothing ever beat
    beats.beat(beat("a", 1))
    beats.beat(beat("a", 6))  # the same serve beats again: one row, newer time
    [alive] = beats.alive(at(7))
    assert alive == beat("a", 6) and alive.beat_at.utcoffset() == timedelta(0)
    late = at(6) + stale_after(5.0)
    assert [b.instance for b in beats.alive(late)] == ["a"]
    assert beats.alive(late + timedelta(seconds=1)) == []  # missed too many beats: gone
    beats.beat(replace(beat("b", 8), backend="kubernetes"))
    assert [b.instance for b in beats.alive(at(9))] == ["b", "a"]  # the most recent first
    beats.forget("b")
    assert [b.instance for b in beats.alive(at(9))] == ["a"]


def test_staleness_follows_each_serves_own_interval_and_old_rows_are_cleared(sql_store: Store) -> None:
    beats = SqlServeHeartbeats(make_session_factory(sql_store.engine))
    beats.beat(beat("slow", 0, interval=60))
    beats.beat(beat("fast", 0, interval=1))
    assert [b.instance for b in beats.alive(at(100))] == ["slow"]  # 100 s: 4 slow beats, but 100 fast ones
    beats.beat(beat("new", 2 * 86_400))  # a day later: rows of serves that died without a word go
    with sql_store.engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT instance FROM serve_heartbeat ORDER BY instance").scalars().all()
    assert left == ["new"]
