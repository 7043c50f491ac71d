"""The lean read's copies of what it cannot import cheaply stay equal to the originals; its settings
resolve the database exactly as Settings does, and anything unusual is left to the full path."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from adapters.db.rows import AttemptRow, ExperimentRow
from bot import cli_lean
from bot.cli_lean_store import (
    ATTEMPT_COLUMNS,
    EXPERIMENT_COLUMNS,
    FREE_TEXT,
    NotLean,
    StoredEvent,
    database_path,
    duration,
)
from bot.cli_waiting import NO_SERVE
from bot.config import Settings
from core import events
from core.messages import describe
from core.model import ACTIVE, State


def test_copies_equal_their_originals():
    assert list(EXPERIMENT_COLUMNS) == [c.name for c in ExperimentRow.__table__.columns]
    assert list(ATTEMPT_COLUMNS) == [c.name for c in AttemptRow.__table__.columns]
    assert set(cli_lean.ACTIVE_STATES) == {str(s) for s in ACTIVE}
    assert cli_lean.NO_SERVE == NO_SERVE
    assert {State(s) for s in cli_lean.WAITS_FOR_SERVE} | {State.PENDING_APPROVAL} == set(
        __import__("bot.cli_waiting", fromlist=["WAITS_FOR_SERVE"]).WAITS_FOR_SERVE)


def test_free_text_settings_accept_any_text():
    """A FREE_TEXT setting is ignored by the lean read: no validator may refuse or change its value."""
    validated = {name for d in Settings.__pydantic_decorators__.field_validators.values() for name in d.info.fields}
    for name in FREE_TEXT:
        field = Settings.model_fields[name.lower()]
        assert name.lower() not in validated
        assert field.annotation in (str, str | None) or "SecretStr" in str(field.annotation), name
        assert not field.metadata, name


def _settings_path(env: dict[str, str], monkeypatch) -> Path:
    for key in [k for k in __import__("os").environ if k.upper().startswith("EXPBOT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    url = Settings().resolved_database_url()
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///")).resolve()


@pytest.mark.parametrize("env", [
    {}, {"EXPBOT_DATA_DIR": "rel/dir"}, {"EXPBOT_DATA_DIR": "/abs/d", "EXPBOT_LOCAL_GPUS": "2"},
    {"EXPBOT_DATABASE_URL": "sqlite:////abs/x.db"}, {"EXPBOT_DATABASE_URL": "sqlite:///rel/x.db"},
    {"expbot_data_dir": "/lower/case", "EXPBOT_SLACK_BOT_TOKEN": "xoxb-1", "EXPBOT_BACKEND": "local",
     "EXPBOT_USER": "ana"},
])
def test_the_database_is_the_one_settings_name(env, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative paths resolve here
    expected = _settings_path(env, monkeypatch)
    monkeypatch.setattr(Path, "is_file", lambda self: self == expected)  # no file in the real home
    assert database_path() == expected


@pytest.mark.parametrize("env", [
    {"EXPBOT_CONFIG_FILE": "/etc/expbot.toml"}, {"EXPBOT_DATABASE_URL": "postgresql://u@h/db"},
    {"EXPBOT_DATABASE_URL": "sqlite:///x.db?mode=ro"}, {"EXPBOT_LOCAL_GPUS": "abc"}, {"EXPBOT_BACKEND": "kubernetes"},
    {"EXPBOT_STOP_GRACE_SECONDS": "5"}, {"EXPBOT_LOG_LEVEL": "loud"}, {"EXPBOT_CLI_FULL_READ": "1"},
    {"EXPBOT_DATA_DIR": "/a", "expbot_data_dir": "/b"},
])
def test_unusual_settings_are_left_to_the_full_path(env, tmp_path):
    with pytest.raises(NotLean):
        database_path({"EXPBOT_DATA_DIR": str(tmp_path), **env} if "EXPBOT_DATA_DIR" not in env else env)


def test_a_fresh_install_is_left_to_the_full_path(tmp_path):
    with pytest.raises(NotLean):
        database_path({"EXPBOT_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("td", [timedelta(hours=2), timedelta(days=1), timedelta(minutes=90), timedelta(seconds=90.5),
                                timedelta(days=7), timedelta(days=400, seconds=1), timedelta(0),
                                timedelta(days=1, hours=1, minutes=1, seconds=1, microseconds=5)])
def test_durations_read_back_as_pydantic_reads_them(td):
    adapter = TypeAdapter(timedelta)
    text = adapter.dump_python(td, mode="json")
    assert duration(text) == adapter.validate_python(text) == td


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1h", 3600, None, "-PT1H", "P1M"])
def test_other_durations_are_left_to_the_full_path(text):
    with pytest.raises(NotLean):
        duration(text)


def test_every_event_kind_reads_the_same_from_its_stored_form():
    """describe() of a stored event (the lean read's) equals describe() of the event itself."""
    from tests.unit.lean_event_samples import SAMPLES

    assert {type(e).__name__ for e in SAMPLES} == set(events.Event.registry)
    for event in SAMPLES:
        stored = StoredEvent(event.kind, __import__("json").dumps(event.payload()))
        assert describe(stored) == describe(event)
        assert stored.occurred_at == event.occurred_at


def test_an_event_stored_without_a_field_is_left_to_the_full_path():
    stored = StoredEvent("AttemptEnded", '{"attempt": 1, "occurred_at": "2026-01-01T00:00:00Z"}')
    with pytest.raises(NotLean):
        describe(stored)
