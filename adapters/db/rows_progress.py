"""SQLModel row for progress reported by training containers (heartbeats and checkpoints)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adapters.db.types import _ts


class AttemptProgressRow(SQLModel, table=True):
    """The last heartbeat, newest reported checkpoint and last step of one attempt.

    No foreign key to attempt: a report is authenticated by its token alone and may arrive
    before the attempt row is committed; a row per attempt is cheap to keep.
    """

    __tablename__ = "attempt_progress"

    experiment_id: str = Field(primary_key=True, sa_type=sa.String)
    attempt: int = Field(primary_key=True, sa_type=sa.Integer, sa_column_kwargs={"autoincrement": False})
    checkpoint: str | None = Field(default=None, sa_type=sa.String)
    checkpoint_at: datetime | None = _ts(default=None)
    heartbeat_at: datetime = _ts(index=True)  # the supervisor asks "who reported since T?"
    step: int | None = Field(default=None, sa_type=sa.BigInteger)
