"""The SQL experiment repository: rows in, detached domain objects out, changes written on commit."""
from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db.row_mapping import (
    ATTEMPT_PREFIX, attempt_from_row, attempt_values, experiment_from_row, experiment_values,
)
from adapters.db.rows import AttemptRow, ExperimentRow
from core.errors import ConcurrentUpdate
from core.ports import NodeFault
from core.model import ACTIVE, Attempt, Experiment, State

EXPERIMENT = ExperimentRow.__table__
ATTEMPT = AttemptRow.__table__


def _statement(where: Sequence[sa.ColumnElement[bool]], newest_first: bool, limit: int | None) -> sa.Select:
    """The experiments matching `where` joined with all their attempts, in one statement."""
    # One statement: no N+1 queries, and on PostgreSQL one consistent snapshot (rows and attempts agree).
    order = [EXPERIMENT.c.created_at, EXPERIMENT.c.id]
    inner = (
        sa.select(EXPERIMENT)
        .where(*where)
        .order_by(*(c.desc() if newest_first else c.asc() for c in order))
        .limit(limit)
        .subquery("e")
    )
    outer_order = [inner.c.created_at, inner.c.id]
    return (
        sa.select(inner, *(c.label(ATTEMPT_PREFIX + c.name) for c in ATTEMPT.c))
        .select_from(inner.outerjoin(ATTEMPT, ATTEMPT.c.experiment_id == inner.c.id))
        .order_by(*(c.desc() if newest_first else c.asc() for c in outer_order), ATTEMPT.c.number)
    )


_FIRST_BY: dict[str, sa.Select] = {}  # column -> the newest experiment where it equals :value


# --- repository --------------------------------------------------------------------------------
class SqlRepository:
    """core.ports.ExperimentRepository over one session; tracks what it loaded and added."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.seen: dict[str, Experiment] = {}
        self.snapshots: dict[str, Experiment] = {}  # as loaded or last saved, to tell what changed
        self.added: list[Experiment] = []

    def add(self, experiment: Experiment) -> None:
        """Stage a new experiment; DuplicateLaunch on commit if its idempotency key exists."""
        self.added.append(experiment)
        self.seen[experiment.id] = experiment

    def get(self, experiment_id: str) -> Experiment | None:
        """The experiment with this id, or None."""
        return self._first_where("id", experiment_id)

    def get_by_name(self, name: str) -> Experiment | None:
        """The newest experiment with this name, or None."""
        return self._first_where("name", name)

    def get_by_idempotency_key(self, key: str) -> Experiment | None:
        """The experiment stored with exactly this idempotency key, or None."""
        return self._first_where("idempotency_key", key)

    def by_id_prefix(self, prefix: str, limit: int = 2) -> list[Experiment]:
        """At most `limit` experiments whose id starts with `prefix` (two tell an ambiguous prefix)."""
        if not prefix or not prefix.isalnum():  # ids are hex: nothing else can match, nor a LIKE wildcard
            return []
        return self._query([EXPERIMENT.c.id.startswith(prefix)], newest_first=True, limit=limit)

    def by_launch(self, launch_id: str) -> list[Experiment]:
        """Every experiment of one launch request (a sweep group), in launch order."""
        found = self._query([EXPERIMENT.c.launch_id == launch_id], newest_first=False)
        return sorted(found, key=lambda e: (e.created_at, len(e.name), e.name))  # sweep-2 before sweep-10

    def failures_on_node(self, node: str, since: datetime, failure_classes: list[str]) -> list[NodeFault]:
        """Attempts on `node` that ended since `since` with one of these failure classes, oldest first."""
        stmt = (
            sa.select(ATTEMPT.c.experiment_id, ATTEMPT.c.number, ATTEMPT.c.ended_at, ATTEMPT.c.reason)
            .where(ATTEMPT.c.node == node, ATTEMPT.c.ended_at >= since, ATTEMPT.c.failure_class.in_(failure_classes))
            .order_by(ATTEMPT.c.ended_at)
        )
        return [NodeFault(*row) for row in self._session.execute(stmt).all()]

    def list(
        self,
        *,
        states: Iterable[State] | None = None,
        owner: str | None = None,
        project: str | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> list[Experiment]:
        """Experiments matching every given filter, newest first."""
        where: list[sa.ColumnElement[bool]] = []
        if states is not None:
            where.append(EXPERIMENT.c.state.in_([str(s) for s in states]))
        if owner is not None:
            where.append(EXPERIMENT.c.owner == owner)
        if project is not None:
            where.append(EXPERIMENT.c.project == project)
        if group is not None:
            where.append(EXPERIMENT.c.group_name == group)
        return self._query(where, newest_first=True, limit=limit)

    def active(self) -> list[Experiment]:
        """Every non-terminal experiment, oldest first (the supervisor's work list)."""
        return self._query([EXPERIMENT.c.state.in_([str(s) for s in ACTIVE])], newest_first=False)

    # --- loading -------------------------------------------------------------------------------
    def _first_where(self, column: str, value: str) -> Experiment | None:
        # The statement is built once per column: building one (a subquery and its proxies) cost
        # more than running it, on every supervisor reconcile and every Slack lookup.
        stmt = _FIRST_BY.get(column)
        if stmt is None:
            stmt = _FIRST_BY[column] = _statement([EXPERIMENT.c[column] == sa.bindparam("value")], True, 1)
        found = self._load(stmt, {"value": value})
        return found[0] if found else None

    def _query(
        self, where: Sequence[sa.ColumnElement[bool]], *, newest_first: bool, limit: int | None = None
    ) -> list[Experiment]:
        return self._load(_statement(where, newest_first, limit), {})

    def _load(self, stmt: sa.Select, params: dict[str, Any]) -> list[Experiment]:
        loaded: dict[str, Experiment] = {}
        fresh: set[str] = set()
        for row in self._session.execute(stmt, params).mappings():
            exp_id = row["id"]
            if exp_id not in loaded:
                known = self.seen.get(exp_id)  # loaded before: keep that object (identity map)
                loaded[exp_id] = known if known is not None else experiment_from_row(row)
                if known is None:
                    fresh.add(exp_id)
            if exp_id in fresh and row[ATTEMPT_PREFIX + "number"] is not None:
                loaded[exp_id].attempts.append(attempt_from_row(row))
        for exp_id in fresh:
            self._track(loaded[exp_id])
        return list(loaded.values())

    def _track(self, experiment: Experiment) -> None:
        self.seen[experiment.id] = experiment
        self.snapshots[experiment.id] = copy.deepcopy(experiment)

    # --- saving (called by the unit of work inside its write transaction) ----------------------
    def changed(self) -> list[Experiment]:
        """Experiments to save: new ones, ones that differ from their snapshot, ones with events."""
        return [
            exp
            for exp in self.seen.values()
            if exp.events or exp != self.snapshots.get(exp.id)
        ]

    @staticmethod
    def key_taken(conn: sa.Connection, key: str) -> bool:
        """Whether an experiment with this idempotency key is stored (inside the write transaction)."""
        found = conn.execute(sa.select(EXPERIMENT.c.id).where(EXPERIMENT.c.idempotency_key == key).limit(1))
        return found.first() is not None

    def insert(self, conn: sa.Connection, exp: Experiment) -> None:
        """Insert a new experiment and its attempts (IntegrityError if its id or key exists)."""
        conn.execute(sa.insert(EXPERIMENT), experiment_values(exp, exp.version + 1))
        if exp.attempts:
            conn.execute(sa.insert(ATTEMPT), [attempt_values(exp.id, a) for a in exp.attempts])

    def update(self, conn: sa.Connection, exp: Experiment) -> None:
        """Save a loaded experiment if nobody saved it since it was loaded, else ConcurrentUpdate."""
        values = experiment_values(exp, exp.version + 1)
        del values["id"]
        result = conn.execute(
            sa.update(EXPERIMENT)
            .where(EXPERIMENT.c.id == exp.id, EXPERIMENT.c.version == exp.version)
            .values(values)
        )
        if result.rowcount != 1:
            raise ConcurrentUpdate(f"{exp.name} changed meanwhile; reload it and try again")
        self._save_attempts(conn, exp, self.snapshots[exp.id].attempts)

    def _save_attempts(self, conn: sa.Connection, exp: Experiment, before: list[Attempt]) -> None:
        # The version check above makes this experiment's attempts ours to write: only the
        # rows that differ from the snapshot are touched.
        old = {a.number: a for a in before}
        new = {a.number: a for a in exp.attempts}
        inserts = [attempt_values(exp.id, a) for n, a in new.items() if n not in old]
        if inserts:
            conn.execute(sa.insert(ATTEMPT), inserts)
        for number, attempt in new.items():
            if number in old and old[number] != attempt:
                values = attempt_values(exp.id, attempt)
                conn.execute(
                    sa.update(ATTEMPT)
                    .where(ATTEMPT.c.experiment_id == exp.id, ATTEMPT.c.number == number)
                    .values({k: v for k, v in values.items() if k not in ("experiment_id", "number")})
                )
        gone = [n for n in old if n not in new]
        if gone:
            conn.execute(
                sa.delete(ATTEMPT).where(ATTEMPT.c.experiment_id == exp.id, ATTEMPT.c.number.in_(gone))
            )

    def saved(self, exp: Experiment) -> None:
        """After the transaction committed: bump the version and take a new snapshot."""
        exp.version += 1
        exp.events = []
        self._track(exp)

    def clear(self) -> None:
        """Forget everything loaded and added."""
        self.seen.clear()
        self.snapshots.clear()
        self.added = []
