"""What a driver error says about the database: read-only, locked, full, gone, or nothing we know."""
from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.engine import make_url

from adapters.db.errors import database_label, database_problem, hide_password


class PgError(Exception):
    """A psycopg error as far as the translation looks at it: its SQLSTATE."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("server says no")
        self.sqlstate = sqlstate


class OperationalError(Exception):
    """What psycopg raises when it cannot connect: no SQLSTATE."""


@pytest.mark.parametrize("error, says, spoilt", [
    (sqlite3.OperationalError("attempt to write a readonly database"), "is read-only", True),
    (sqlite3.OperationalError("database is locked"), "is locked by another process", False),
    (sqlite3.OperationalError("database or disk is full"), "is full", True),
    (sqlite3.OperationalError("disk I/O error"), "cannot be read or written", True),
    (sqlite3.OperationalError("unable to open database file"), "cannot be opened", True),
    (PgError("25006"), "is read-only", True),
    (PgError("53100"), "is full", False),
    (PgError("08006"), "cannot be reached", True),
    (OperationalError("connection failed: Connection refused"), "cannot be reached", True),
])
def test_a_sick_database_is_named_by_what_it_is(error, says, spoilt):
    assert database_problem(error) == (says, spoilt)


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("no such table: experiment"),  # a bug, not a sick database
    sqlite3.IntegrityError("UNIQUE constraint failed: experiment.id"),
    PgError("23505"),
    ValueError("attempt to write a readonly database"),
])
def test_anything_else_is_left_alone(error):
    assert database_problem(error) is None


def test_the_label_names_the_file_or_the_url_without_its_password_and_the_setting():
    assert database_label(make_url("sqlite:////d/expbot.db"), "EXPBOT_DATA_DIR") == "the database /d/expbot.db (EXPBOT_DATA_DIR)"
    assert database_label(make_url("postgresql+psycopg://ana:pw@db/x")) == "the database postgresql+psycopg://ana:***@db/x"


@pytest.mark.parametrize("text, password, shown", [
    ('connection to server at "127.0.0.1", port 1 failed: Connection refused', "p",
     'connection to server at "127.0.0.1", port 1 failed: Connection refused'),  # was '***ort 1 failed'
    ("dsn postgresql://ana:s3cret-pw@db/x failed", "s3cret-pw", "dsn postgresql://ana:***@db/x failed"),
    ("host=db password=hunter2 user=ana", "hunter2", "host=db password=*** user=ana"),
    ("no password here", None, "no password here"),
])
def test_the_password_is_masked_where_it_stands_alone_and_nowhere_else(text, password, shown):
    assert hide_password(text, password) == shown
