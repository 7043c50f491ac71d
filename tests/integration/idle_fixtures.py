"""Fixtures for the idle-state contract: an idle-state store per store kind (fake, SQLite, PostgreSQL).

Import into a test module: `from tests.integration.idle_fixtures import idle_states`.
"""
from __future__ import annotations

from typing import Any

import pytest

from adapters.db.engine import make_session_factory
from adapters.db.idle_states import SqlIdleStates
from tests.fakes.idle_states import FakeIdleStates
from tests.integration.conftest import Store


@pytest.fixture
def idle_states(store: Store) -> Any:
    """SqlIdleStates on the store's database, or FakeIdleStates on the fake's."""
    if store.kind == "fake":
        with store.new_uow() as uow:
            return FakeIdleStates(uow.db)  # type: ignore[attr-defined]
    assert store.engine is not None
    return SqlIdleStates(make_session_factory(store.engine))
