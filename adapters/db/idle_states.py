"""Idle-GPU bookkeeping per experiment (the idle_state table), for the idle job and Keep."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.db.engine import write_transaction
from adapters.db.rows import ExperimentRow
from adapters.db.rows_cost import IdleStateRow
from core.idle import IdleState
from core.model import ACTIVE

IDLE = IdleStateRow.__table__
EXPERIMENT = ExperimentRow.__table__
_FIELDS = ("idle_since", "warned_at", "snoozed_until", "idle_gpu_seconds")


class SqlIdleStates:
    """One row per experiment that ever had idle bookkeeping; absent rows read as IdleState()."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def get(self, experiment_id: str) -> IdleState:
        """The experiment's idle state (a fresh IdleState if none was saved)."""
        with self._session_factory() as session:
            row = session.execute(sa.select(IDLE).where(IDLE.c.experiment_id == experiment_id)).first()
        return _state(row)

    def save(self, experiment_id: str, state: IdleState, *, expected: IdleState | None = None) -> bool:
        """Store the state; with `expected`, only if the stored one still equals it (False otherwise).

        The idle job and a Keep pressed in Slack write the same row: the job passes what it
        read, so a Keep that landed meanwhile is never overwritten by a stale decision.
        """
        values = {name: getattr(state, name) for name in _FIELDS}
        with self._session_factory() as session:
            try:
                with write_transaction(session) as conn:
                    # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers.
                    row = conn.execute(
                        sa.select(IDLE).where(IDLE.c.experiment_id == experiment_id).with_for_update()
                    ).first()
                    if expected is not None and _state(row) != expected:
                        return False
                    if row is None:
                        conn.execute(sa.insert(IDLE).values(experiment_id=experiment_id, **values))
                    else:
                        conn.execute(sa.update(IDLE).where(IDLE.c.experiment_id == experiment_id).values(**values))
            except IntegrityError:
                # Another writer inserted the first row at the same moment (PostgreSQL).
                if expected is not None:
                    return False
                return self.save(experiment_id, state, expected=self.get(experiment_id))
        return True

    def total_idle_gpu_hours(self, *, since: datetime | None = None) -> float:
        """Idle GPU-hours summed over experiments; with `since`, only those still active or updated since then.

        Each experiment contributes its whole running total (not just the part inside the
        window): good enough for "GPU-hours wasted" in a daily digest, and needs no history table.
        """
        query = sa.select(sa.func.coalesce(sa.func.sum(IDLE.c.idle_gpu_seconds), 0.0))
        if since is not None:
            query = query.select_from(IDLE.join(EXPERIMENT, EXPERIMENT.c.id == IDLE.c.experiment_id)).where(
                sa.or_(EXPERIMENT.c.updated_at >= since, EXPERIMENT.c.state.in_([str(s) for s in ACTIVE]))
            )
        with self._session_factory() as session:
            seconds = session.execute(query).scalar_one()
        return float(seconds) / 3600.0


def _state(row: sa.Row | None) -> IdleState:
    if row is None:
        return IdleState()
    return IdleState(
        idle_since=row.idle_since, warned_at=row.warned_at, snoozed_until=row.snoozed_until,
        idle_gpu_seconds=float(row.idle_gpu_seconds),
    )
