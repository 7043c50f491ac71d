"""Progress reported by training containers (the attempt_progress table): core.progress.ProgressStore."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapters.db.engine import write_transaction
from adapters.db.rows_progress import AttemptProgressRow
from core.progress import ProgressReport

PROGRESS = AttemptProgressRow.__table__


class SqlProgressStore:
    """One row per (experiment, attempt), upserted by every report."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def record(self, report: ProgressReport) -> None:
        """Store a report: a heartbeat, and when it names one, the attempt's newest checkpoint."""
        has_checkpoint = report.checkpoint is not None
        values = {
            "experiment_id": report.experiment_id, "attempt": report.attempt, "heartbeat_at": report.at,
            "checkpoint": report.checkpoint, "checkpoint_at": report.at if has_checkpoint else None,
            "step": report.step,
        }
        with self._session_factory() as session, write_transaction(session) as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(PROGRESS).values(**values)
            new, old = insert.excluded, PROGRESS.c
            # Concurrent requests may commit out of order: an older report never overwrites a newer one.
            newer_beat = new.heartbeat_at >= old.heartbeat_at
            newer_checkpoint = sa.and_(
                new.checkpoint.is_not(None), sa.or_(old.checkpoint_at.is_(None), new.checkpoint_at >= old.checkpoint_at)
            )
            conn.execute(insert.on_conflict_do_update(
                index_elements=[old.experiment_id, old.attempt],
                set_={
                    "heartbeat_at": sa.case((newer_beat, new.heartbeat_at), else_=old.heartbeat_at),
                    "step": sa.case((sa.and_(newer_beat, new.step.is_not(None)), new.step), else_=old.step),
                    "checkpoint": sa.case((newer_checkpoint, new.checkpoint), else_=old.checkpoint),
                    "checkpoint_at": sa.case((newer_checkpoint, new.checkpoint_at), else_=old.checkpoint_at),
                },
            ))

    def latest_checkpoint(self, experiment_id: str) -> str | None:
        """The newest checkpoint reported by any attempt of the experiment (ties: the higher attempt)."""
        with self._session_factory() as session:
            return session.execute(
                sa.select(PROGRESS.c.checkpoint)
                .where(PROGRESS.c.experiment_id == experiment_id, PROGRESS.c.checkpoint.is_not(None))
                .order_by(PROGRESS.c.checkpoint_at.desc(), PROGRESS.c.attempt.desc())
                .limit(1)
            ).scalar_one_or_none()

    def heartbeats(self, since: datetime) -> dict[tuple[str, int], datetime]:
        """(experiment_id, attempt) -> last report time, for every attempt heard from at or after `since`."""
        with self._session_factory() as session:
            rows = session.execute(
                sa.select(PROGRESS.c.experiment_id, PROGRESS.c.attempt, PROGRESS.c.heartbeat_at)
                .where(PROGRESS.c.heartbeat_at >= since)
            ).all()
        return {(experiment_id, attempt): at for experiment_id, attempt, at in rows}
