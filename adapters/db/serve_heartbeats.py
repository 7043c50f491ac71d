"""The serve_heartbeat table: each running `expbot serve` stamps its row, so the CLI can tell whether
anything will start what it launched."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db.engine import write_transaction
from adapters.db.rows_serve import ServeHeartbeatRow

# A row this old belongs to a serve that died without a word (SIGKILL, a lost node): cleared away.
_FORGET_AFTER = timedelta(days=1)
_MISSED_BEATS = 4


HEARTBEAT = ServeHeartbeatRow.__table__


@dataclass(frozen=True)
class ServeBeat:
    """What the CLI learns of a serve process from its row."""

    instance: str
    backend: str
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    interval_seconds: float


class SqlServeHeartbeats:
    """Beats of serve processes, written by serve and read by the CLI (one short statement each)."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def beat(self, serve: ServeBeat) -> None:
        """Record that `serve` is alive at `serve.beat_at` (its row is created on the first beat)."""
        values = {"backend": serve.backend, "host": serve.host, "pid": serve.pid,
                  "started_at": serve.started_at, "beat_at": serve.beat_at, "interval_seconds": serve.interval_seconds}
        with self._session_factory() as session, write_transaction(session) as conn:
            # Only this process writes its row, so update-else-insert cannot race with itself.
            updated = conn.execute(sa.update(HEARTBEAT).where(HEARTBEAT.c.instance == serve.instance).values(**values))
            if updated.rowcount == 0:
                conn.execute(sa.insert(HEARTBEAT).values(instance=serve.instance, **values))
            conn.execute(sa.delete(HEARTBEAT).where(HEARTBEAT.c.beat_at < serve.beat_at - _FORGET_AFTER))

    def forget(self, instance: str) -> None:
        """A serve that stops cleanly removes its row: nothing runs launches any more."""
        with self._session_factory() as session, write_transaction(session) as conn:
            conn.execute(sa.delete(HEARTBEAT).where(HEARTBEAT.c.instance == instance))

    def alive(self, now: datetime) -> list[ServeBeat]:
        """Every serve whose last beat is recent for its own interval, the most recent first."""
        with self._session_factory() as session:
            rows = session.execute(
                sa.select(HEARTBEAT).where(HEARTBEAT.c.beat_at >= now - _FORGET_AFTER)
                .order_by(HEARTBEAT.c.beat_at.desc())
            ).mappings().all()
        beats = [ServeBeat(**row) for row in rows]
        return [b for b in beats if now - b.beat_at <= stale_after(b.interval_seconds)]


def stale_after(interval_seconds: float) -> timedelta:
    """How long without a beat before a serve counts as gone: a few missed beats, never under 10 s."""
    # A loaded machine delays a beat by seconds; one late beat must not announce that nothing runs.
    return timedelta(seconds=max(_MISSED_BEATS * interval_seconds, 10.0))
