"""The SQL outbox: events stored with the state change that caused them, delivered afterwards."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db.engine import write_transaction
from adapters.db.rows import OutboxEventRow
from core.events import Event

OUTBOX = OutboxEventRow.__table__


def insert_events(conn: sa.Connection, events: Iterable[Event]) -> None:
    """Store new events (inside the caller's transaction), in the order given."""
    rows = [
        {
            "event_id": e.event_id,
            "experiment_id": e.experiment_id,
            "kind": e.kind,
            "payload": e.payload(),
            "occurred_at": e.occurred_at,
        }
        for e in events
    ]
    if rows:
        conn.execute(sa.insert(OUTBOX), rows)


def _events(rows: Iterable[sa.Row[tuple[str, dict]]]) -> list[Event]:
    return [Event.from_stored(kind, payload) for kind, payload in rows]


class SqlOutbox:
    """core.ports.Outbox over one session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def pending(self, limit: int = 100) -> list[Event]:
        """Events not yet delivered, oldest first."""
        stmt = (
            sa.select(OUTBOX.c.kind, OUTBOX.c.payload)
            .where(OUTBOX.c.delivered_at.is_(None))
            .order_by(OUTBOX.c.seq)
            .limit(limit)
        )
        return _events(self._session.execute(stmt))

    def mark_delivered(self, event_id: str, at: datetime) -> None:
        """Record that an event reached its destination; durable at once, like the fake.

        A delivery is a fact about the outside world, not part of the caller's transaction:
        keeping it even if the unit of work rolls back avoids delivering the event twice.
        """
        with write_transaction(self._session) as conn:
            conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.event_id == event_id, OUTBOX.c.delivered_at.is_(None))
                .values(delivered_at=at)
            )

    def for_experiment(self, experiment_id: str) -> list[Event]:
        """Every event of one experiment, oldest first (its timeline)."""
        stmt = (
            sa.select(OUTBOX.c.kind, OUTBOX.c.payload)
            .where(OUTBOX.c.experiment_id == experiment_id)
            .order_by(OUTBOX.c.seq)
        )
        return _events(self._session.execute(stmt))
