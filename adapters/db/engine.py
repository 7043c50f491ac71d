"""Engines and sessions: SQLite (the default, a file shared by several processes) or PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlmodel import Session as SQLModelSession

from adapters.db.errors import database_label, translate_errors

# How long a SQLite writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option read by the SQLite "begin" hook: "IMMEDIATE" takes the write lock up front.
SQLITE_BEGIN = "expbot_sqlite_begin"


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL; plain PostgreSQL URLs are rewritten to the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or bool(url.query.get("mode") == "memory")


def make_engine(url: str | URL, *, setting: str | None = None, **kwargs: Any) -> Engine:
    """An engine for `url`: SQLite in WAL mode with foreign keys and a busy timeout, or psycopg.

    A sick database (read-only, locked, full, gone) raises DatabaseUnavailable naming it (and
    `setting`, the configuration that chose it) and the cause; its spoilt connections are dropped.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _make_sqlite_engine(parsed, **kwargs)
    else:
        engine = sa.create_engine(parsed, pool_pre_ping=True, **kwargs)
    # Named as configured: 'postgresql://...' is what the user wrote, not the driver chosen for it.
    label = database_label(make_url(url) if isinstance(url, str) else url, setting)
    # An in-memory database lives in its one connection: throwing that away would lose it.
    translate_errors(engine, label, discard_spoilt=not (parsed.get_backend_name() == "sqlite" and _is_memory(parsed)))
    return engine


def _make_sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    # The supervisor and the Slack listener threads share the pool.
    connect_args: dict[str, Any] = {"check_same_thread": False}
    if _is_memory(url):
        # Every connection to :memory: is a different database: share one connection.
        kwargs.setdefault("poolclass", StaticPool)
    else:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite (it would not BEGIN before reads or DDL);
    # _on_sqlite_begin emits BEGIN itself. This is SQLAlchemy's documented recipe.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers (the CLI) never block the writer (`expbot serve`) and vice versa.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, much faster
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: sa.Connection) -> None:
    mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_session_factory(engine: Engine) -> sessionmaker[SQLModelSession]:
    """Sessions (SQLModel's, with `.exec()`) for units of work and read queries."""
    return sessionmaker(engine, class_=SQLModelSession, expire_on_commit=False)


@contextmanager
def write_transaction(session: Session) -> Iterator[sa.Connection]:
    """A fresh transaction that holds the write lock from its first statement.

    The session must have nothing uncommitted: its read transaction is ended first,
    because SQLite cannot turn a read snapshot that another process has since outdated
    into a write (it fails at once, busy_timeout or not). BEGIN IMMEDIATE waits instead.
    Commits on success, rolls back on any error.
    """
    session.rollback()
    conn = session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
    try:
        yield conn
    except BaseException:
        session.rollback()
        raise
    session.commit()
