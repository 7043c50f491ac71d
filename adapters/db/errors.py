"""A sick database (read-only, locked, full, gone) becomes one DatabaseUnavailable, at the engine."""
from __future__ import annotations

import gc
import re
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, ExceptionContext

from core.errors import DatabaseUnavailable

# What SQLite says -> what the database is, and whether the connection is spoilt for good. One
# opened while the file (or its -wal/-shm, or its directory) was not writable stays read-only
# for life, even once the files are writable again, and pre-ping cannot tell (reads work).
_SQLITE_PROBLEMS = (
    ("readonly database", "is read-only", True),
    ("database is locked", "is locked by another process", False),  # after the busy timeout
    ("database table is locked", "is locked by another process", False),
    ("database or disk is full", "is full", True),
    ("disk i/o error", "cannot be read or written", True),
    ("unable to open database file", "cannot be opened", True),
)
# PostgreSQL SQLSTATEs, or their two-character class -> what the database is, spoilt or not.
_PG_PROBLEMS = {
    "25006": ("is read-only", True),  # a standby after a failover: a new connection finds the primary
    "53100": ("is full", False),
    "55P03": ("is locked by another process", False),
    "53300": ("cannot be reached", True),  # too many connections
    "57P01": ("cannot be reached", True),  # shut down by an administrator
    "57P02": ("cannot be reached", True),
    "57P03": ("cannot be reached", True),  # starting up or shutting down
    "08": ("cannot be reached", True),  # connection exceptions
}


def database_label(url: URL, setting: str | None = None) -> str:
    """How errors name a database: its file, or its URL without the password, and the setting."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        where = url.database
    else:
        where = url.render_as_string(hide_password=True)
    return f"the database {where}" + (f" ({setting})" if setting else "")


def translate_errors(engine: Engine, label: str, *, discard_spoilt: bool = True) -> None:
    """Make `engine` raise DatabaseUnavailable for a sick database, and discard spoilt connections."""
    password = engine.url.password
    discard_all = _discard_all_together(engine) if discard_spoilt and engine.dialect.name == "sqlite" else None

    def on_error(ctx: ExceptionContext) -> DatabaseUnavailable | None:
        problem = database_problem(ctx.original_exception)
        if problem is None:
            return None
        what, spoilt = problem
        if spoilt and discard_spoilt:
            # The connection, and the pool's others opened in the same bad moment, are thrown
            # away: the next unit of work opens fresh ones, which work once the database does.
            ctx.is_disconnect = True
            ctx.invalidate_pool_on_disconnect = True
            if discard_all is not None:
                discard_all()
        if ctx.is_pre_ping:
            return None  # pre-ping reconnects by itself; a failure after that is reported then
        reason = " ".join(str(ctx.original_exception).split())  # drivers explain over several lines
        return DatabaseUnavailable(f"{label} {what}: {hide_password(reason, password)}")

    event.listen(engine, "handle_error", on_error)


def _discard_all_together(engine: Engine) -> Any:
    """A function that closes every connection of `engine` opened until now: idle ones at once, busy ones when returned.

    SQLite shares one -shm per database file per process: a connection opened while one opened
    read-only is still open is read-only too, for life. Replacing the spoilt connections one at a
    time (SQLAlchemy recycles idle ones at checkout, next to the others) never ends; closing them
    all together does, once the file is writable again. A closed sqlite3 connection whose
    statements a garbage cursor still holds stays open inside SQLite (sqlite3_close_v2), so the
    next fresh connection is preceded by one garbage collection.
    """
    spoilt_until, collect = [0.0], [False]

    def stamp(_dbapi: Any, record: Any) -> None:
        record.info["expbot_opened"] = time.monotonic()

    def before_connect(*_args: Any) -> None:
        if collect[0]:
            collect[0] = False
            # Frozen objects (serve freezes what start-up built) are never collected: the start-up
            # connections' garbage among them too. Thawed for this one collection, frozen again.
            frozen = gc.get_freeze_count() > 0
            gc.unfreeze()
            gc.collect()
            if frozen:
                gc.freeze()

    def close_if_spoilt(dbapi: Any, record: Any) -> None:
        if dbapi is not None and record.info.get("expbot_opened", 0.0) <= spoilt_until[0]:
            record.invalidate()  # closed now, reopened at its next checkout

    def discard_all() -> None:
        spoilt_until[0], collect[0] = time.monotonic(), True
        engine.dispose(close=True)  # the idle ones; the busy ones are closed as they come back

    event.listen(engine, "do_connect", before_connect)
    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", close_if_spoilt)
    return discard_all


def hide_password(text: str, password: object) -> str:
    """`text` with the password masked wherever it stands as a whole word (in a URL, after `password=`).

    Only whole words: a short password masked inside other words made the driver's explanation
    unreadable ('***ort 1 failed' for the password 'p'), and a word containing it is not the password.
    """
    if not password:
        return text
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(str(password))}(?![A-Za-z0-9])", "***", text)


def database_problem(error: BaseException) -> tuple[str, bool] | None:
    """What a driver error says about the database ('is read-only'), and whether its connection is spoilt."""
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if state:
        return _PG_PROBLEMS.get(state) or _PG_PROBLEMS.get(state[:2])
    kind = type(error)
    if kind.__module__ == "sqlite3":
        text = str(error).lower()
        return next(((what, spoilt) for says, what, spoilt in _SQLITE_PROBLEMS if says in text), None)
    if kind.__name__ == "OperationalError":  # a PostgreSQL driver that could not connect, or lost the server
        return "cannot be reached", True
    return None
