"""A start-up schema upgrade refused because another process holds a fresh SQLite file's lock is tried again."""
from __future__ import annotations

import pytest

from adapters.db import migrate
from core.errors import DatabaseUnavailable


def _scripted(monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> list[str]:
    calls: list[str] = []

    def fake_upgrade(target, revision):
        calls.append(revision)
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr(migrate, "_upgrade", fake_upgrade)
    monkeypatch.setattr(migrate.time, "sleep", lambda _s: None)
    return calls


def test_a_locked_database_is_tried_again_until_the_other_process_is_done(monkeypatch):
    locked = DatabaseUnavailable("the database /d/expbot.db (EXPBOT_DATA_DIR) is locked by another process: database is locked")
    calls = _scripted(monkeypatch, [locked, locked])
    migrate.upgrade("sqlite:////d/expbot.db")
    assert calls == ["head", "head", "head"]


def test_other_troubles_and_a_lock_that_lasts_are_raised(monkeypatch):
    read_only = DatabaseUnavailable("the database /d/expbot.db is read-only: attempt to write a readonly database")
    calls = _scripted(monkeypatch, [read_only])
    with pytest.raises(DatabaseUnavailable, match="read-only"):
        migrate.upgrade("sqlite:////d/expbot.db")
    assert calls == ["head"]
    locked = DatabaseUnavailable("the database /d/expbot.db is locked by another process: database is locked")
    calls = _scripted(monkeypatch, [locked] * 10)
    with pytest.raises(DatabaseUnavailable, match="locked"):
        migrate.upgrade("sqlite:////d/expbot.db")
    assert len(calls) == migrate._LOCKED_TRIES
