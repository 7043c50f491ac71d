"""The TOML file is read and validated once per start: load_settings reads it, everything else reuses it."""
from __future__ import annotations

from pathlib import Path

import pytest

import bot.config_toml
from bot.bootstrap import bootstrap
from bot.config import load_settings

CONFIG = """
[launch]
projects = ["nlp", "vision"]
default_project = "nlp"

[gpu_types.a100]
price_per_hour = 2.5

[budgets]
projects = { nlp = 100.0 }

[kubernetes]
pvc_size = "10Gi"

[failures.dead-nic]
pattern = "mlx5_core.*link down"
class = "network"
"""


def test_load_settings_and_bootstrap_read_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "expbot.toml"
    path.write_text(CONFIG)
    reads: list[Path] = []
    real_read = bot.config_toml._read_toml

    def counting_read(file: Path) -> dict:
        reads.append(file)
        return real_read(file)

    monkeypatch.setattr(bot.config_toml, "_read_toml", counting_read)
    settings = load_settings(
        config_file=path, data_dir=tmp_path / "data", local_gpus=0,
        slack_bot_token="xoxb-test", slack_api_url="http://127.0.0.1:9/api/",  # Slack wiring reads prices too
    )
    expbot = bootstrap(settings)
    assert reads == [path]
    # What was built is what every part uses.
    assert expbot.launch_config is settings.launch_config() and expbot.budgets is settings.budget_config()
    assert settings.k8s_config().pvc_size == "10Gi" and settings.failure_catalog() is settings.failure_catalog()
    assert reads == [path]
