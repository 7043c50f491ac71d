"""The store as read commands see it (ls, status, logs): no migration, no wiring, few imports.

bootstrap builds everything `serve` needs (the supervisor, the schedulers, Alembic, the digest):
most of a second before a read command has done anything. A reader opens the database and, when
asked, the backend, and nothing else; it never upgrades the schema, and a database whose schema is
behind this expbot is named in one line instead of failing on a missing column.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import Any

from bot.config import Settings, load_settings
from core.errors import ExpbotError


class Reader:
    """What read commands use: settings, a read session's repositories, the clock, the backend."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:  # as bootstrap does: the SQLite file and the runs live there
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ExpbotError(f"cannot use EXPBOT_DATA_DIR={settings.data_dir}: {e.strerror or e}") from e
        self.url = settings.resolved_database_url()
        from adapters.db.engine import make_engine, make_session_factory

        setting = "EXPBOT_DATABASE_URL" if settings.database_url else "EXPBOT_DATA_DIR"
        with schema_errors(self.url):
            self.engine = make_engine(self.url, setting=setting)
        self._sessions = make_session_factory(self.engine)
        self.clock = _clock()

    @property
    def sessions(self) -> Any:
        """The session factory (for a query of one's own: the budgets, the serve heartbeat)."""
        return self._sessions

    def now(self) -> datetime:
        """The current time, as the store records it."""
        return self.clock.now()

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """A read session's experiment repository and outbox (as `.experiments`, `.outbox`)."""
        from adapters.db.outbox import SqlOutbox
        from adapters.db.repository import SqlRepository

        if self._never_migrated():
            yield _Views(_Empty(), _Empty())  # a fresh install: nothing launched yet, nothing to upgrade
            return
        session = self._sessions()
        try:
            with schema_errors(self.url, self.engine):
                yield _Views(SqlRepository(session), SqlOutbox(session))
        finally:
            session.rollback()
            session.close()

    def serve_missing(self) -> bool:
        """True when no `expbot serve` has stamped its heartbeat recently for this database."""
        from bot.cli_waiting import serve_missing

        if self._never_migrated():
            return True
        with schema_errors(self.url, self.engine):
            return serve_missing(self.sessions, self.now())

    def _never_migrated(self) -> bool:
        import sqlalchemy as sa

        with schema_errors(self.url):
            return not sa.inspect(self.engine).has_table("experiment")

    @cached_property
    def backend(self) -> Any:
        """The cluster backend, for logs and live process details (built only when asked)."""
        if self.settings.backend == "local":
            from adapters.local.runner import LocalRunner

            # 0 GPUs: a reader never starts an attempt, so nvidia-smi need not be asked.
            return LocalRunner(self.settings.runs_dir(), 0, self.clock, cgroups=self.settings.local_cgroups)
        from bot.bootstrap import _cluster

        backend, _ = _cluster(self.settings, self.clock, self._sessions)
        return backend


class _Views:
    """The two repositories a read session offers (the unit of work's names for them)."""

    def __init__(self, experiments: Any, outbox: Any) -> None:
        self.experiments, self.outbox = experiments, outbox


class _Empty:
    """The store before anything was ever launched (its schema not yet created): empty, not an error."""

    def get(self, *_args: Any) -> None:
        return None

    get_by_name = get

    def by_id_prefix(self, *_args: Any, **_kwargs: Any) -> list:
        return []

    list = for_experiment = by_id_prefix


def _clock() -> Any:
    from adapters.clock import SystemClock

    return SystemClock()


def open_reader() -> Reader:
    """A Reader over the configured store, for one read command."""
    return Reader(load_settings())


@contextmanager
def schema_errors(url: str, engine: Any = None) -> Iterator[None]:
    """A database error in a read: name a schema behind this expbot, else any problem, in one line."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, ValueError, ImportError) as e:
        behind = _schema_behind(engine) if engine is not None else None
        if behind:
            raise ExpbotError(behind) from e
        from bot.bootstrap import shown_url

        reason = " ".join(str(getattr(e, "orig", None) or e).split())  # drivers explain over several lines
        raise ExpbotError(f"cannot open the database {shown_url(url)} (EXPBOT_DATABASE_URL): {reason}") from e


def _schema_behind(engine: Any) -> str | None:
    """Why the schema cannot serve this expbot (never migrated, or an older revision), else None."""
    # Alembic loads only on this error path: a healthy read never pays for it.
    from adapters.db.migrate import current_revision, head_revision

    try:
        current, head = current_revision(engine), head_revision()
    except Exception:  # noqa: BLE001 - the original error is reported instead
        return None
    fix = "run `expbot db upgrade` (or start `expbot serve`, which upgrades it)"
    if current is None:
        return f"the database has no expbot tables yet: {fix}"
    if current != head:
        return f"the database schema is at revision {current}, this expbot needs {head}: {fix}"
    return None
