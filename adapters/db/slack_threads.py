"""Where each launch's Slack parent message lives (channel + ts), so replies go to its thread."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.db.rows import SlackThreadRow

THREAD = SlackThreadRow.__table__


class SlackThreads:
    """A tiny store of parent messages, keyed by launch id."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def get(self, launch_id: str) -> tuple[str, str] | None:
        """(channel, ts) of the launch's parent message, or None if none was posted yet."""
        with self._session_factory() as session:
            row = session.execute(
                sa.select(THREAD.c.channel, THREAD.c.ts).where(THREAD.c.launch_id == launch_id)
            ).first()
        return (row.channel, row.ts) if row else None

    def save(self, launch_id: str, channel: str, ts: str, at: datetime) -> tuple[str, str]:
        """Record the parent message; if one was recorded already, keep and return that one."""
        with self._session_factory() as session:
            try:
                session.execute(sa.insert(THREAD).values(launch_id=launch_id, channel=channel, ts=ts, created_at=at))
                session.commit()
            except IntegrityError:
                session.rollback()
                existing = self.get(launch_id)
                if existing is None:
                    raise
                return existing
        return channel, ts
