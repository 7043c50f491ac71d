"""The README's TOML examples are accepted as written, and name every key of every table the file takes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.config_file import table_keys

REPO = Path(__file__).resolve().parents[2]


def toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)


def keys_shown() -> dict[str, set[str]]:
    """Per table (`gpu_types.NAME` for every GPU type's), the keys the README's TOML blocks set or
    name in a comment (`# or exit_code = 86`)."""
    shown: dict[str, set[str]] = {}
    table = ""
    for block in toml_blocks():
        for line in block.splitlines():
            header = re.match(r"\s*\[([\w.-]+)\]", line)
            if header:
                first, _, rest = header[1].partition(".")
                table = f"{first}.NAME" if rest and first in ("gpu_types", "failures") else header[1]
            shown.setdefault(table, set()).update(re.findall(r"(?:^|[\s#{,])(\w+)\s*=", line))
    return shown


@pytest.mark.parametrize("index", range(len(toml_blocks())))
def test_every_toml_example_in_the_readme_is_accepted(tmp_path, index):
    path = tmp_path / "expbot.toml"
    path.write_text(toml_blocks()[index])
    load_settings(config_file=path, data_dir=tmp_path)  # an ExpbotError names the wrong key


def test_the_readme_shows_every_key_of_every_table():
    shown, keys = keys_shown(), table_keys()
    assert len(keys) >= 6 and "pod_annotations" in keys["kubernetes"]  # the tables were found
    missing = {table: sorted(names - shown.get(table, set())) for table, names in keys.items()}
    missing = {table: names for table, names in missing.items() if names}
    assert not missing, f"keys of the TOML file no README example shows: {missing}"
