"""One local serve per data directory; on Kubernetes several replicas stay legal (the Lease picks the leader)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.serve_presence import hold_local_data_dir
from core.errors import ExpbotError


def test_a_second_local_hold_on_one_data_dir_is_refused_until_the_first_is_released(tmp_path):
    local = SimpleNamespace(backend="local", data_dir=tmp_path / "data")
    release = hold_local_data_dir(local)
    with pytest.raises(ExpbotError, match=r"another `expbot serve` \(pid \d+\) is already running on EXPBOT_DATA_DIR="):
        hold_local_data_dir(local)
    hold_local_data_dir(SimpleNamespace(backend="local", data_dir=tmp_path / "other"))()  # another dir: its own
    release()
    hold_local_data_dir(local)()  # released: the next serve may start


def test_kubernetes_replicas_hold_nothing(tmp_path):
    replica = SimpleNamespace(backend="kubernetes", data_dir=tmp_path / "data")
    releases = [hold_local_data_dir(replica), hold_local_data_dir(replica)]
    assert not (tmp_path / "data" / "serve.lock").exists()
    for release in releases:
        release()
