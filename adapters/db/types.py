"""Column types shared by every table: timestamps that are timezone-aware UTC in and out."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Named constraints (set before any table is defined): Alembic's batch mode on SQLite can only drop or alter what has a name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that goes in timezone-aware and comes out timezone-aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Normalise to UTC; refuse naive datetimes (they would be stored ambiguously)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: expbot stores timezone-aware times only")
        value = value.astimezone(timezone.utc)
        # SQLite has no zone type: store UTC wall time so that text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Attach UTC where the database dropped the zone (SQLite); convert otherwise."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, **kwargs)
