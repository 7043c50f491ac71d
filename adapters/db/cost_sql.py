"""Portable SQL for cost queries: time arithmetic SQLite and PostgreSQL both run, and the window clip.

A window [start, end) is charged the part of each attempt's running interval inside it; every cost
query narrows attempts with overlapping() and measures them with clipped_interval().
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from adapters.db.rows import AttemptRow, ExperimentRow
from adapters.db.types import UtcDateTime

ATTEMPT = AttemptRow.__table__
EXPERIMENT = ExperimentRow.__table__


class seconds_between(FunctionElement[float]):  # noqa: N801  (reads like the SQL function it is)
    """Seconds from the first timestamp to the second, as a float (negative if the second is earlier)."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    # SQLite keeps UTC wall time as text (see UtcDateTime); julianday() reads it as UTC days.
    first, second = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({second}) - julianday({first})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    first, second = (compiler.process(c, **kw) for c in element.clauses)
    # date_part() computes in double precision; EXTRACT() returns numeric, several times slower.
    return f"date_part('epoch', {second} - {first})"


@compiles(seconds_between)
def _seconds_between_other(element: seconds_between, compiler: Any, **kw: Any) -> str:
    raise CompileError(f"seconds_between is not implemented for {compiler.dialect.name}")


class greatest(FunctionElement[float]):  # noqa: N801
    """The largest argument: GREATEST on PostgreSQL, multi-argument max() on SQLite."""

    type = sa.Float()
    name = "greatest"
    inherit_cache = True


class least(FunctionElement[float]):  # noqa: N801
    """The smallest argument: LEAST on PostgreSQL, multi-argument min() on SQLite."""

    type = sa.Float()
    name = "least"
    inherit_cache = True


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _least_sqlite(element: least, compiler: Any, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


@compiles(greatest)
def _greatest_default(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(least)
def _least_default(element: least, compiler: Any, **kw: Any) -> str:
    return f"LEAST({compiler.process(element.clauses, **kw)})"


class likely(FunctionElement[bool]):  # noqa: N801
    """A condition true for most rows: SQLite's likelihood() hint, the bare condition elsewhere."""

    type = sa.Boolean()
    name = "likely"
    inherit_cache = True


@compiles(likely, "sqlite")
def _likely_sqlite(element: likely, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, 0.9375)"


@compiles(likely)
def _likely_default(element: likely, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


def ts(value: datetime) -> sa.BindParameter[datetime]:
    """A timestamp parameter bound exactly as the columns store it (UTC text on SQLite)."""
    return sa.literal(value, type_=UtcDateTime)


def num(value: float) -> sa.BindParameter[float]:
    """A float parameter (seconds, offsets) bound as SQL double precision."""
    return sa.literal(float(value), type_=sa.Float())


def overlapping(start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    """Attempts whose running interval can meet [start, end): the indexable part of every query."""
    # Windows are recent (yesterday, this month): nearly every attempt started before their end,
    # while few ended after their start. SQLite has no statistics to tell the two ranges apart, so
    # it is told: the ended_at index (ix_attempt_ended_at) is the one that narrows the scan.
    return sa.and_(
        likely(ATTEMPT.c.started_at < ts(end)),
        sa.or_(ATTEMPT.c.ended_at.is_(None), ATTEMPT.c.ended_at > ts(start)),
    )


def clipped_interval(start: datetime, end: datetime, now: datetime) -> tuple[sa.ColumnElement[float], sa.ColumnElement[float]]:
    """(from, to) of each attempt's running interval inside the window, in seconds after `start`.

    `to` is never below `from`, so to - from is the overlap (0 when they do not meet).
    """
    began = greatest(seconds_between(ts(start), ATTEMPT.c.started_at), num(0))
    # A running attempt accrues up to now: its offset is a constant, not a per-row conversion.
    stopped = sa.func.coalesce(
        seconds_between(ts(start), ATTEMPT.c.ended_at), num((now - start).total_seconds())
    )
    return began, greatest(least(stopped, num((end - start).total_seconds())), began)
