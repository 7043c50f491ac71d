"""A loop that outlives its failures says each in one line: a sick database is not a wall of tracebacks."""
from __future__ import annotations

import logging
import threading

import pytest

from core.errors import DatabaseUnavailable
from core.failures import FailureLog
from tests.fakes.store import FakeUnitOfWork
from tests.polling import wait_for

READ_ONLY = "the database /d/expbot.db (EXPBOT_DATA_DIR) is read-only: attempt to write a readonly database"


def test_a_sick_database_is_one_warning_line_per_failed_pass_and_the_loop_recovers(world, caplog, monkeypatch):
    world.launch("first -- python train.py")
    world.launch("second -- python train.py")
    sick = threading.Event()
    sick.set()
    real_commit = FakeUnitOfWork.commit

    def commit(uow):  # reads work, writes do not: a SQLite file that went read-only
        if sick.is_set():
            raise DatabaseUnavailable(READ_ONLY)
        return real_commit(uow)

    monkeypatch.setattr(FakeUnitOfWork, "commit", commit)
    caplog.set_level(logging.INFO, logger="core.supervisor")
    stop = threading.Event()
    loop = threading.Thread(target=world.supervisor.run, args=(stop, 0.01), daemon=True)
    loop.start()
    try:
        wait_for(lambda: sum("supervisor pass failed" in r.getMessage() for r in caplog.records) >= 3,
                 what="three failed passes")
        sick.clear()
        wait_for(lambda: world.get("first").attempts and world.get("second").attempts,
                 what="both started once the database is well")
    finally:
        stop.set()
        loop.join(timeout=10)
    said = [r for r in caplog.records if r.name == "core.supervisor"]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in said)
    failed = [r.getMessage() for r in said if "works again" not in r.getMessage()]
    # Each failed pass is one line naming the cause (not one per experiment with a traceback).
    assert failed and all(m.startswith("supervisor pass failed (") and m.endswith(READ_ONLY) for m in failed)
    assert any("supervisor pass works again after" in r.getMessage() for r in said)


def test_an_unexpected_error_shows_its_traceback_once_per_run_of_failures(caplog):
    caplog.set_level(logging.WARNING)
    failures = FailureLog(logging.getLogger("loop"), "relay round")
    for _ in range(3):
        failures.failed(ValueError("boom"))
    failures.failed(KeyError("other"))
    assert [r.exc_info is not None for r in caplog.records] == [True, False, False, True]
    assert caplog.records[2].getMessage() == "relay round failed (3 in a row): ValueError: boom"
    failures.succeeded()
    failures.succeeded()
    assert [r.getMessage() for r in caplog.records[4:]] == ["relay round works again after 4 failed round(s)"]
    failures.failed(ValueError("boom"))
    assert caplog.records[-1].exc_info is not None  # a new run of failures: shown again


@pytest.mark.parametrize("error", [DatabaseUnavailable(READ_ONLY)])
def test_a_known_error_is_its_message_without_a_traceback(caplog, error):
    caplog.set_level(logging.WARNING)
    FailureLog(logging.getLogger("loop"), "supervisor pass").failed(error)
    [record] = caplog.records
    assert record.exc_info is None and record.getMessage() == f"supervisor pass failed (1 in a row): {READ_ONLY}"
