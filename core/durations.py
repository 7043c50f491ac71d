"""Parse and format human durations such as `90m`, `12h`, `1h30m`, `2d`."""
from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ORDER = "dhms"  # a duration names its units largest first, each once: `1h30m`, never `30m1h`
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def is_bare_number(text: str) -> bool:
    """Whether `text` is a number without a unit (`90`), which no duration option accepts."""
    return bool(_NUMBER.fullmatch(text.strip()))


def parse_duration(text: str, default_unit: str | None = None) -> timedelta | None:
    """Return the duration `text` names, or None if it is not one.

    Bare numbers are durations only when a default_unit is given; a unit named twice (`1h1h`) or
    out of order (`30m1h`) is not a duration: such text is a typo, not a sum.
    """
    text = text.strip().lower()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        return None if default_unit is None else timedelta(seconds=float(text) * _UNIT_SECONDS[default_unit])
    pos, total, last = 0, 0.0, -1
    for match in _PART.finditer(text):
        rank = _ORDER.index(match.group(2))
        if match.start() != pos or rank <= last:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos, last = match.end(), rank
    if pos != len(text):
        return None
    return timedelta(seconds=total)


def format_duration(value: timedelta | float) -> str:
    """Format a duration compactly, e.g. `1h30m`, `45s`, `2d3h`."""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])
