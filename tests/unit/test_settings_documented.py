"""Every setting expbot reads is in one of the README's settings tables, and every row there is read.

Settings are the fields of every pydantic-settings class in bot/ and adapters/ (bot.config.Settings
and any sub-model like the sandbox's) plus any EXPBOT_* variable the code reads from os.environ
directly. A settings table is a README table whose first column is `variable` (the tables of what
every attempt gets, `| variable | value |`, are expbot's output, not settings).
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
_PACKAGES = ("bot", "adapters", "core")
_ENV_READ = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](EXPBOT_[A-Z0-9_]+)["']""")


def _modules_defining_settings() -> list[str]:
    """Modules whose source defines a settings class (imported so that the class exists)."""
    found = []
    for package in _PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "BaseSettings" in path.read_text(encoding="utf-8"):
                found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def settings_read() -> dict[str, str]:
    """Every EXPBOT_* variable the code reads -> where (class.field, or the file reading it)."""
    for module in _modules_defining_settings():
        importlib.import_module(module)
    read: dict[str, str] = {}
    for cls in _subclasses(BaseSettings):
        if not cls.__module__.startswith(tuple(f"{p}." for p in _PACKAGES)):
            continue  # a test's or a library's own
        prefix = cls.model_config.get("env_prefix", "")
        for field, info in cls.model_fields.items():
            alias = info.validation_alias or info.alias
            name = alias if isinstance(alias, str) else f"{prefix}{field}"
            read[name.upper()] = f"{cls.__module__}.{cls.__name__}.{field}"
    for package in _PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for name in _ENV_READ.findall(path.read_text(encoding="utf-8")):
                read.setdefault(name, str(path.relative_to(REPO)))
    return read


def settings_documented() -> set[str]:
    """The variables named in the first column of the README's settings tables."""
    documented: set[str] = set()
    in_table = False
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if not cells:
            in_table = False
        elif cells[0] == "variable":  # a header row: a settings table unless it lists values
            in_table = "value" not in cells[1:]
        elif in_table and not set(cells[0]) <= set("-: "):
            documented |= set(re.findall(r"`(EXPBOT_[A-Z0-9_]+)`", cells[0]))
    return documented


def test_the_readme_documents_every_setting_and_only_settings():
    read, documented = settings_read(), settings_documented()
    assert "EXPBOT_DATA_DIR" in read and "EXPBOT_USER" in read and "EXPBOT_DATA_DIR" in documented  # the parsers work
    missing = {name: where for name, where in read.items() if name not in documented}
    assert not missing, f"settings the README's tables do not name: {missing}"
    unknown = documented - set(read)
    assert not unknown, f"README rows for settings no code reads: {sorted(unknown)}"


def test_documented_defaults_match_the_code():
    """Where a settings row gives a plain number or true/false as default, it is the code's default."""
    from bot.config import Settings

    fields = {f"EXPBOT_{name}".upper(): info.default for name, info in Settings.model_fields.items()}
    checked = 0
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        names = re.findall(r"`(EXPBOT_[A-Z0-9_]+)`", cells[0]) if cells else []
        if len(cells) < 3 or not names or not all(n in fields for n in names):
            continue
        defaults = [d.strip().strip("`").split(" ")[0] for d in cells[1].split(" / ")]
        for name, shown in zip(names, defaults if len(defaults) == len(names) else []):
            code = fields[name]
            if shown in ("true", "false"):
                assert code is (shown == "true"), f"{name}: README says {shown}, the code {code!r}"
                checked += 1
            elif re.fullmatch(r"-?\d+(\.\d+)?", shown) and isinstance(code, (int, float)):
                assert float(shown) == float(code), f"{name}: README says {shown}, the code {code!r}"
                checked += 1
    assert checked >= 10  # the rows were found: the check cannot pass by reading nothing
