"""Schema migrations, run in code: the one way expbot's schema is created or changed."""
from __future__ import annotations

import time
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Engine

from adapters.db.engine import SQLITE_BEGIN, make_engine, normalise_url
from core.errors import DatabaseUnavailable

# Same as alembic.ini; '%' doubled because Config goes through ConfigParser interpolation.
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s"
# Any fixed number: PostgreSQL advisory lock that serialises concurrent upgrades (replicas).
_PG_MIGRATION_LOCK = 7_261_530_041
_LOCKED_TRIES = 5  # a start-up upgrade refused because another process holds the fresh file's lock


def alembic_config(url: str | URL) -> Config:
    """An Alembic configuration for `url`, with the installed `migrations` package as scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("migrations")))
    rendered = normalise_url(url).render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    cfg.set_main_option("timezone", "UTC")
    return cfg


def _engine(target: str | URL | Engine) -> tuple[Engine, bool]:
    """The engine to use, and whether it is ours to dispose of."""
    if isinstance(target, Engine):
        return target, False
    return make_engine(target), True


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Bring the database (a URL, or an engine from make_engine) up to `revision`.

    Safe to run repeatedly and concurrently.
    """
    for attempt in range(_LOCKED_TRIES):
        try:
            return _upgrade(target, revision)
        except DatabaseUnavailable as e:
            # Two processes opening a fresh SQLite file at once (serve and a CLI launch): switching
            # it to WAL can be refused at once, busy timeout or not. The other one is done soon.
            if "is locked" not in str(e) or attempt == _LOCKED_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _upgrade(target: str | URL | Engine, revision: str) -> None:
    engine, owned = _engine(target)
    cfg = alembic_config(engine.url)
    try:
        with engine.connect() as conn:
            # One transaction holding the write lock (SQLite) or an advisory lock (PostgreSQL)
            # before the current revision is read: `expbot serve` and a CLI call starting at
            # the same time must not both create the tables.
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
    finally:
        if owned:
            engine.dispose()


def current_revision(target: str | URL | Engine) -> str | None:
    """The revision the database (a URL or an engine) is at, or None if it was never migrated."""
    engine, owned = _engine(target)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str | None:
    """The newest revision among the installed migration scripts."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
