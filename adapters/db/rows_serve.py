"""SQLModel row for the heartbeat each running `expbot serve` keeps in the database."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adapters.db.types import _ts


class ServeHeartbeatRow(SQLModel, table=True):
    """One running serve process and the time of its last beat."""

    __tablename__ = "serve_heartbeat"

    instance: str = Field(primary_key=True, sa_type=sa.String)  # random per process: a restart is a new row
    backend: str = Field(sa_type=sa.String)  # "local" or "kubernetes"
    host: str = Field(sa_type=sa.String)
    pid: int = Field(sa_type=sa.Integer)
    started_at: datetime = _ts()
    beat_at: datetime = _ts(index=True)  # the CLI asks "who beat since T?"
    interval_seconds: float = Field(sa_type=sa.Float)  # how often it beats: a reader judges staleness by it
