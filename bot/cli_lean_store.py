"""The embedded store read with the standard library only: what `ls` and `status` need, in a blink.

`expbot ls` paid a second for imports (SQLAlchemy, SQLModel, pydantic, pydantic-settings) before it
read a row. On the embedded default (a SQLite file) the read commands open the file read-only with
sqlite3 and read the tables the repository writes (adapters/db/rows.py) with plain SQL, into light
views that bot/render.py draws exactly as it draws the domain objects.

Anything out of the ordinary raises NotLean before a word is printed, and the command takes the
full path (bot/cli_store.py) as before: a setting that needs checking, a configuration file, a
database that is not a SQLite file, a schema this reader does not know, a value it cannot parse.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from core.attempt import Attempt, AttemptState, FailureClass

# Forces the full path (the tests compare both paths' output); not a user setting.
FULL_READ_ENV = "EXPBOT_CLI_FULL_READ"
# Not Settings fields: read by the CLI itself, ignored by Settings.
_CLI_ONLY = frozenset({"USER", "IDEMPOTENCY_KEY", "CLI_FULL_READ"})
# Settings fields whose every value is valid text (no validator, no type to check) and that `ls` and
# `status` do not use: setting them does not change what a read prints (tests/unit keeps this true).
FREE_TEXT = frozenset({
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL", "SLACK_DEFAULT_CHANNEL",
    "SLACK_ADMINS", "SLACK_ADMIN_GROUP", "SLACK_APPROVERS", "SLACK_APPROVER_GROUP", "SLACK_APPROVALS_CHANNEL",
    "SLACK_OPS_CHANNEL", "SLACK_DIGEST_CHANNEL", "K8S_NAMESPACE", "K8S_CONTEXT", "REPORT_URL", "REPORT_SECRET",
    "LEASE_NAME", "POD_NAME", "PROMETHEUS_URL", "PROMETHEUS_POD_LABEL", "PROMETHEUS_NAMESPACE", "HTTP_HOST",
})
# Every column of the tables read, as adapters/db/rows.py defines them (a test keeps them equal): the full
# path selects them all, so a schema behind this expbot fails here too and is named by the full path.
EXPERIMENT_COLUMNS = ("id", "name", "group_name", "owner", "project", "state", "state_reason", "spec",
                      "idempotency_key", "created_at", "updated_at", "next_attempt_at", "user_restarts",
                      "infra_restarts", "free_restarts", "stopped_by", "stop_requested_at", "launch_id", "channel",
                      "version")
ATTEMPT_COLUMNS = ("experiment_id", "number", "state", "created_at", "started_at", "ended_at", "exit_code", "reason",
                   "failure_class", "resumed_from", "gpus", "hourly_rate", "node")
# The spec fields a read shows; a stored spec without one of them is older than this reader knows.
_SPEC_FIELDS = ("name", "command", "project", "gpus", "nodes", "gpu_type", "group", "max_runtime", "max_restarts",
                "max_preemptions")
_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_EVENT_TIMES = ("occurred_at", "until", "expires_at")


class NotLean(Exception):
    """This read needs the full path (an unusual setting, store or value); nothing was printed yet."""


def database_path(environ: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    """The SQLite file the settings name, resolved as bot/config.py does, or NotLean when that needs Settings."""
    return store_paths(environ)[0]


def store_paths(environ: os._Environ[str] | dict[str, str] = os.environ) -> tuple[Path, Path]:
    """The SQLite file and the local runner's runs directory (Settings.runs_dir), or NotLean."""
    values: dict[str, str] = {}
    for key, value in environ.items():
        upper = key.upper()
        if not upper.startswith("EXPBOT_"):
            continue
        name = upper[len("EXPBOT_"):]
        if name in values:  # set twice in different case: which wins is pydantic-settings' business
            raise NotLean(key)
        values[name] = value
    if values.get("CLI_FULL_READ"):
        raise NotLean(FULL_READ_ENV)
    for name, value in values.items():
        ok = (name in _CLI_ONLY or name in FREE_TEXT or (name == "DATA_DIR" and value != "")
              or (name == "LOCAL_GPUS" and value.isascii() and value.isdigit())
              or (name == "BACKEND" and value == "local") or name == "DATABASE_URL")
        if not ok:
            raise NotLean(name)
    data_dir = Path(values["DATA_DIR"]) if "DATA_DIR" in values else Path.home() / ".expbot"
    url = values.get("DATABASE_URL")
    if url is None:
        path = (data_dir / "expbot.db").resolve()
    else:
        match = re.fullmatch(r"sqlite:///([^?#%]+)", url)
        if match is None or match[1] == ":memory:":
            raise NotLean("DATABASE_URL")  # another database, or a URL SQLAlchemy must read
        path = Path(match[1]).resolve()
    if not path.is_file():
        raise NotLean("no database file")  # a fresh install: the full path says what that means
    return path, (data_dir / "runs").resolve()


def connect(path: Path) -> sqlite3.Connection:
    """The file opened read-only (WAL readers never block serve, and a read never creates or upgrades it)."""
    try:
        return sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as e:
        raise NotLean(str(e)) from e


def _time(value: Any) -> datetime | None:
    """A stored timestamp as the repository returns it: timezone-aware UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as e:
        raise NotLean(f"timestamp {value!r}") from e
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def duration(text: Any) -> timedelta:
    """An ISO 8601 duration as pydantic writes a timedelta ('PT2H', 'P1Y35D'), or NotLean."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) and text not in ("P", "PT") else None
    if match is None or text.endswith("T"):
        raise NotLean(f"duration {text!r}")
    years, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=years * 365 + days, hours=hours, minutes=minutes, seconds=seconds)


@dataclass(frozen=True)
class SpecView:
    """The spec fields a read shows."""

    name: str
    command: tuple[str, ...]
    project: str
    gpus: int
    nodes: int
    gpu_type: str | None
    group: str | None
    max_runtime: timedelta
    max_restarts: int
    max_preemptions: int


@dataclass
class ExperimentView:
    """An experiment as a read shows it (the same names as core.model.Experiment)."""

    id: str
    spec: SpecView
    owner: str
    created_at: datetime
    state: str
    state_reason: str
    updated_at: datetime | None
    next_attempt_at: datetime | None
    user_restarts: int
    infra_restarts: int
    free_restarts: int
    launch_id: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def runtime(self, now: datetime) -> timedelta:
        """Total running time over all attempts (as core.model.Experiment.runtime)."""
        return sum((a.running_time(now) for a in self.attempts), timedelta(0))


def _spec(text: Any) -> SpecView:
    try:
        data = json.loads(text) if isinstance(text, str) else text
        values = {name: data[name] for name in _SPEC_FIELDS}
    except (TypeError, KeyError, ValueError) as e:
        raise NotLean("stored spec") from e
    values["command"] = tuple(values["command"])
    values["max_runtime"] = duration(values["max_runtime"])
    return SpecView(**values)


def _experiment(row: sqlite3.Row) -> ExperimentView:
    return ExperimentView(
        id=row["id"], spec=_spec(row["spec"]), owner=row["owner"], created_at=_time(row["created_at"]),
        state=row["state"], state_reason=row["state_reason"], updated_at=_time(row["updated_at"]),
        next_attempt_at=_time(row["next_attempt_at"]), user_restarts=row["user_restarts"],
        infra_restarts=row["infra_restarts"], free_restarts=row["free_restarts"], launch_id=row["launch_id"],
    )


def _attempt(row: sqlite3.Row) -> Attempt:
    try:
        failure = row["failure_class"]
        return Attempt(
            number=row["number"], created_at=_time(row["created_at"]), state=AttemptState(row["state"]),
            started_at=_time(row["started_at"]), ended_at=_time(row["ended_at"]), exit_code=row["exit_code"],
            reason=row["reason"], failure_class=None if failure is None else FailureClass(failure),
            resumed_from=row["resumed_from"], gpus=row["gpus"], hourly_rate=row["hourly_rate"], node=row["node"],
        )
    except ValueError as e:  # a state or failure class this expbot does not know
        raise NotLean(str(e)) from e


class LeanReader:
    """Reads of one command over one read transaction (one snapshot, as the full path's one statement)."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._db.row_factory = sqlite3.Row
        self._db.isolation_level = None  # transactions are ours: BEGIN below, never one for a write
        self._run("BEGIN")

    def _run(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as e:  # no such table or column (schema behind), busy, corrupt: the full path says
            raise NotLean(str(e)) from e

    def close(self) -> None:
        """End the read transaction and the connection."""
        self._db.close()

    def experiments(self, where: str = "", params: tuple = (), limit: int | None = None) -> list[ExperimentView]:
        """Experiments matching `where`, newest first, with their attempts (as SqlRepository._query)."""
        sql = f"SELECT {', '.join(EXPERIMENT_COLUMNS)} FROM experiment {'WHERE ' + where if where else ''} " \
              "ORDER BY created_at DESC, id DESC" + ("" if limit is None else f" LIMIT {int(limit)}")
        found = {row["id"]: _experiment(row) for row in self._run(sql, params)}
        ids = list(found)
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            rows = self._run(f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempt WHERE experiment_id IN "
                             f"({', '.join('?' * len(chunk))}) ORDER BY experiment_id, number", chunk)
            for row in rows:
                found[row["experiment_id"]].attempts.append(_attempt(row))
        return list(found.values())

    def listing(self, states: tuple[str, ...] | None, owner: str | None, project: str | None, group: str | None,
                limit: int) -> list[ExperimentView]:
        """What `ls` lists (as SqlRepository.list)."""
        where, params = [], []
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params += states
        for column, value in (("owner", owner), ("project", project), ("group_name", group)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return self.experiments(" AND ".join(where), tuple(params), limit)

    def find(self, ref: str) -> ExperimentView:
        """The experiment `ref` names, as core.lookup.find_experiment finds it; NotLean for anything else."""
        found = self.experiments("name = ?", (ref,), limit=1)
        if not found and len(ref) >= 4 and ref.isalnum():
            matches = self.experiments("id LIKE ?", (ref + "%",), limit=2)  # hex ids: no wildcard in ref
            found = [e for e in matches if e.id == ref] or (matches if len(matches) == 1 else [])
        if not found:  # not found, ambiguous, or a sweep's name: the full path answers
            raise NotLean("not one experiment")
        return found[0]

    def timeline(self, experiment_id: str) -> list[StoredEvent]:
        """The experiment's events, oldest first."""
        rows = self._run("SELECT kind, payload FROM outbox_event WHERE experiment_id = ? ORDER BY seq",
                         (experiment_id,))
        return [StoredEvent(row["kind"], row["payload"]) for row in rows]

    def serve_missing(self, now: datetime) -> bool:
        """True when no serve has beaten recently (as adapters.db.serve_heartbeats.alive)."""
        for row in self._run("SELECT beat_at, interval_seconds FROM serve_heartbeat"):
            beat = _time(row["beat_at"])
            if now - beat <= timedelta(days=1) and now - beat <= timedelta(seconds=max(4 * row["interval_seconds"],
                                                                                     10.0)):
                return False
        return True


class StoredEvent:
    """An outbox event's stored fields as attributes (core.messages.describe reads it by its kind)."""

    def __init__(self, kind: str, payload: Any) -> None:
        try:
            data = json.loads(payload) if isinstance(payload, str) else dict(payload)
            for name in _EVENT_TIMES:
                if name in data:
                    data[name] = _time(data[name])
        except (TypeError, ValueError) as e:
            raise NotLean("stored event") from e
        self.kind = kind
        self.__dict__.update(data)

    def __getattr__(self, name: str) -> Any:  # a field stored before it existed: pydantic's default is needed
        raise NotLean(f"{self.kind} without {name}")
