"""Which daily digests were claimed and posted: once per day across replicas and restarts."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.db.engine import write_transaction
from adapters.db.rows_cost import DigestRunRow
from adapters.db.types import UtcDateTime

DIGEST_RUN = DigestRunRow.__table__
# A claim not marked posted after this long is taken to be from a replica that died mid-post.
STALE_CLAIM = timedelta(minutes=30)


class DigestRuns:
    """The digest_run table; its primary key (the local day) is what makes a digest exactly-once."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def claim(self, day: str, by: str, at: datetime, stale_after: timedelta = STALE_CLAIM) -> bool:
        """True for the one caller that may post `day`'s digest; False if another claimed it.

        A claim never marked posted may be taken over once it is older than `stale_after`, so
        that a replica dying between claim and post does not lose the day forever.
        """
        with self._session_factory() as session:
            try:
                with write_transaction(session) as conn:
                    conn.execute(sa.insert(DIGEST_RUN).values(day=day, claimed_by=by, claimed_at=at))
                return True
            except IntegrityError:
                pass
            with write_transaction(session) as conn:
                taken = conn.execute(
                    sa.update(DIGEST_RUN)
                    .where(
                        DIGEST_RUN.c.day == day,
                        DIGEST_RUN.c.posted_at.is_(None),
                        DIGEST_RUN.c.claimed_at < sa.literal(at - stale_after, type_=UtcDateTime),
                    )
                    .values(claimed_by=by, claimed_at=at)
                )
            return taken.rowcount == 1

    def mark_posted(self, day: str, channel: str, ts: str, at: datetime) -> None:
        """Record where `day`'s digest was posted."""
        with self._session_factory() as session, write_transaction(session) as conn:
            conn.execute(
                sa.update(DIGEST_RUN).where(DIGEST_RUN.c.day == day).values(posted_at=at, channel=channel, ts=ts)
            )

    def last_posted_day(self) -> str | None:
        """The latest day whose digest was posted ('YYYY-MM-DD'), or None if none ever was."""
        with self._session_factory() as session:
            return session.execute(
                sa.select(sa.func.max(DIGEST_RUN.c.day)).where(DIGEST_RUN.c.posted_at.is_not(None))
            ).scalar_one()

    def posted(self, day: str) -> tuple[str, str] | None:
        """(channel, ts) of `day`'s digest if it was posted."""
        with self._session_factory() as session:
            row = session.execute(
                sa.select(DIGEST_RUN.c.channel, DIGEST_RUN.c.ts)
                .where(DIGEST_RUN.c.day == day, DIGEST_RUN.c.posted_at.is_not(None))
            ).first()
        return (row.channel, row.ts) if row else None
