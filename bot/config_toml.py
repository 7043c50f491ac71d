"""The TOML configuration file: read it, check its tables and keys, build models from them.

Every mistake becomes one line naming the file, the table and the key (never a traceback).
"""
from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.errors import ExpbotError
from core.spec import GpuType
from core.suggest import closest

M = TypeVar("M", bound=BaseModel)
_SECRET_KEYS = frozenset({"report_secret"})
_EXPECTED = {
    "int_parsing": "expected a whole number", "int_type": "expected a whole number",
    "int_from_float": "expected a whole number", "float_parsing": "expected a number",
    "float_type": "expected a number", "finite_number": "expected a finite number",
    "bool_parsing": "expected true or false", "bool_type": "expected true or false",
    "string_type": "expected a string", "string_too_short": "must not be empty",
    "dict_type": "expected a table", "list_type": "expected a list", "tuple_type": "expected a list",
    "date_type": "expected a date like 2025-06-01", "date_parsing": "expected a date like 2025-06-01",
    "date_from_datetime_parsing": "expected a date like 2025-06-01",
}
_BOUNDS = {"greater_than": ("gt", "more than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def expected_words(error: Any) -> str:
    """What a value should have been, in words, for one pydantic error."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx[key]
        return f"must be {words} {bound.total_seconds() if isinstance(bound, timedelta) else bound:g}"
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    return error["msg"][:1].lower() + error["msg"][1:]


# --- the TOML file: every table goes through _check_keys and _model, which name file and key ----
_SECTIONS = ("launch", "gpu_types", "prices", "budgets", "kubernetes", "failures")


def toml_tables(path: Path) -> dict[str, Any]:
    """The file's contents, each top-level key checked to be a known table."""
    data = _read_toml(path)
    for key, value in data.items():
        if key not in _SECTIONS:
            raise ExpbotError(f"{path}: unknown section [{key}]{_did_you_mean(key, _SECTIONS, '[{}]')}")
        if not isinstance(value, dict):
            raise ExpbotError(f"{path}: {key}={value!r}: expected a table, [{key}]")
    return data


def gpu_type_from_table(path: Path, name: str, entry: Any) -> GpuType:
    """One [gpu_types.NAME] table as a catalog entry."""
    section = f"gpu_types.{name}"
    if not isinstance(entry, dict):
        raise ExpbotError(f"{path}: [gpu_types] {name}={entry!r}: expected a table, "
                          f"[{section}] with price_per_hour = ...")
    if "name" in entry:
        raise ExpbotError(f"{path}: [{section}] name={entry['name']!r}: a GPU type is named by its table, "
                          f"here {name!r}; remove the key")
    check_keys(path, section, entry, set(GpuType.model_fields) - {"name"})
    return model_from_table(path, section, GpuType, dict(entry), name=name)


# Keys that look like they belong in a table but are set elsewhere.
_SET_ELSEWHERE = {"gpu_catalog": "; GPU types are [gpu_types.NAME] tables",
                  "gpu_pools": "; GPU pools come from [gpu_types.NAME] node_selector and tolerations",
                  "stop_grace": "; set EXPBOT_STOP_GRACE_SECONDS instead",
                  "report_url": "; set EXPBOT_REPORT_URL instead",
                  "report_secret": "; set EXPBOT_REPORT_SECRET instead (secrets never come from the file)"}


def check_keys(path: Path | None, section: str, table: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse keys a table does not have (a typo would otherwise be silently ignored)."""
    allowed = sorted(allowed)
    unknown = [f"{path}: unknown key {key!r} in [{section}]{_SET_ELSEWHERE.get(key) or _did_you_mean(key, allowed)}"
               for key in table if key not in allowed]
    if unknown:
        raise ExpbotError("\n".join(unknown))


def _did_you_mean(key: str, known: Iterable[str], form: str = "{}") -> str:
    close = closest(key, known)
    return f"; did you mean {form.format(close)}?" if close else ""


def toml_duration(path: Path | None, section: str, key: str, value: Any, unit: str, allow_zero: bool = False) -> timedelta:
    """A number of seconds or hours from the TOML file (which has no durations) as a timedelta."""
    number_ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    problem = f"expected a number of {unit}, {'0 or more' if allow_zero else 'greater than 0'}"
    if number_ok and (value > 0 or (allow_zero and value == 0)):
        try:
            return timedelta(**{unit: value})
        except OverflowError:
            problem = "is too large"
    raise ExpbotError(f"{path}: [{section}] {key}={value!r}: {problem}")


def model_from_table(path: Path | None, section: str, model: type[M], fields: dict[str, Any], **given: Any) -> M:
    """One model from one TOML table; every mistake becomes a line naming the file and the key."""
    try:
        return model(**fields, **given)
    except ValidationError as e:
        lines = []
        for error in e.errors():
            loc = error["loc"]
            key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
            value = "(hidden)" if _SECRET_KEYS & set(map(str, loc)) else repr(error["input"])
            lines.append(f"{path}: [{section}] {key}={value}: {expected_words(error)}" if loc
                         else f"{path}: [{section}] {expected_words(error)}")
        raise ExpbotError("\n".join(lines)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    where = f"EXPBOT_CONFIG_FILE={str(path)!r}"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExpbotError(f"{where}: the configuration file does not exist") from None
    except IsADirectoryError:
        raise ExpbotError(f"{where}: is a directory, expected a TOML file") from None
    except PermissionError:
        raise ExpbotError(f"{where}: permission denied reading the configuration file") from None
    except UnicodeDecodeError as e:
        raise ExpbotError(f"{where}: the configuration file is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ExpbotError(f"{where}: cannot read the configuration file: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ExpbotError(f"{where}: the configuration file is not valid TOML: {e}") from None
