"""The SQL unit of work: experiments and their new events commit together, or not at all."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.db.engine import make_session_factory, write_transaction
from adapters.db.cost_queries import SqlCostQueries
from adapters.db.governance import SqlAuditLog, SqlBudgetStore
from adapters.db.outbox import SqlOutbox, insert_events
from adapters.db.repository import SqlRepository
from adapters.db.rows import ACTIVE_NAME_INDEX
from core.errors import DuplicateLaunch, NameInUse
from core.events import Event

# make_session_factory is re-exported: bootstrap builds units of work from this module.
__all__ = ["SqlUnitOfWork", "make_session_factory"]


def _names_index(error: IntegrityError, *names: str) -> bool:
    """Whether the violated constraint is one of these (PostgreSQL names the index, SQLite the column)."""
    text = str(error.orig)
    return any(name in text for name in names)


class SqlUnitOfWork:
    """core.ports.UnitOfWork over SQLAlchemy sessions; re-enterable (each `with` is a new session).

    Reads run in the session's own transaction; nothing is written until commit(), which
    saves in one short write transaction every experiment that changed since it was loaded
    (or carries events), guarded by its version: optimistic concurrency, no locks held
    while the caller talks to a cluster or to Slack.
    """

    experiments: SqlRepository
    outbox: SqlOutbox
    audit: SqlAuditLog
    budgets: SqlBudgetStore
    costs: SqlCostQueries

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None
        self._new_events: list[Event] = []
        self.committed = 0

    def __enter__(self) -> "SqlUnitOfWork":
        self._session = self._session_factory()
        self.experiments = SqlRepository(self._session)
        self.outbox = SqlOutbox(self._session)
        self.audit = SqlAuditLog(self._session)
        self.budgets = SqlBudgetStore(self._session)
        self.costs = SqlCostQueries(self._session)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.rollback()
        finally:
            if self._session is not None:
                self._session.close()
                self._session = None

    def commit(self) -> None:
        """Save every experiment touched (ConcurrentUpdate if one changed meanwhile) and its events."""
        session = self._require_session()
        repo = self.experiments
        changed = repo.changed()
        added = {id(exp) for exp in repo.added}
        events = [event for exp in changed for event in exp.events]
        if not changed and not self.audit.staged and not self.budgets.staged:
            session.rollback()  # nothing to write: just end the read transaction, take no lock
            self.committed += 1
            return
        with write_transaction(session) as conn:
            for exp in repo.added:
                # Asked first: a retried launch breaks the name index as well, and SQLite names that one.
                if exp.idempotency_key and repo.key_taken(conn, exp.idempotency_key):
                    raise DuplicateLaunch(exp.idempotency_key)
                try:
                    repo.insert(conn, exp)
                except IntegrityError as e:
                    if _names_index(e, ACTIVE_NAME_INDEX, "experiment.name"):
                        # Another launch of this name committed first (the partial unique index).
                        raise NameInUse(f"an experiment named {exp.name!r} is already active") from e
                    # The unique idempotency key (or the id) is taken: a retried launch.
                    raise DuplicateLaunch(exp.idempotency_key or exp.id) from e
            for exp in changed:
                if id(exp) not in added:
                    repo.update(conn, exp)
            insert_events(conn, events)
            self.audit.flush(conn)
            self.budgets.flush(conn)
        # Only now that the transaction is durable do the domain objects move on.
        for exp in changed:
            repo.saved(exp)
        repo.added = []
        self._new_events.extend(events)
        self.committed += 1

    def rollback(self) -> None:
        """Drop everything uncommitted and forget what was loaded."""
        if self._session is not None:
            self._session.rollback()
            self.experiments.clear()
            self.audit.staged = []
            self.budgets.staged = []

    def collect_new_events(self) -> Iterator[Event]:
        """Events committed by this unit of work, for in-process handlers."""
        while self._new_events:
            yield self._new_events.pop(0)

    def _require_session(self) -> Session:
        if self._session is None:
            raise RuntimeError("use the unit of work inside `with uow:`")
        return self._session
