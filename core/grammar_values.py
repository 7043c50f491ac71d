"""Value checkers for the launch grammar: each turns one option's text into a checked value."""
from __future__ import annotations

import re
from datetime import timedelta

from core.durations import format_duration, is_bare_number, parse_duration
from core.errors import SpecError

from core.grammar_names import (
    SWEEP_KEY,
    check_member_names,
    check_name,
    check_sweep_size,
    parse_env,
    parse_sweep,
    suggest_name,
)
from core.grammar_text import bare, show
from core.spec import DNS1123_LABEL, GpuType
from core.suggest import closest

# Name checks and message quoting moved to their own modules; every checker stays importable
# from here, the one module the grammar reads option values through.
__all__ = [
    "MAX_COUNT", "MAX_PROJECT_LENGTH", "SWEEP_KEY", "bare", "check_duration", "check_member_names",
    "check_name", "check_sweep_size", "did_you_mean", "parse_checkpoint_glob", "parse_cpu",
    "parse_duration_option", "parse_env", "parse_exit_codes", "parse_gpu_type", "parse_hours",
    "parse_image", "parse_memory", "parse_pattern", "parse_project", "parse_sweep", "parse_whole",
    "show", "suggest_name", "to_duration",
]

# ASCII digits only: int() and float() would also accept ' 3', '1_0', '٣', 'inf' and 'nan'.
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
# A CPU quantity as people write it: cores ('4', '2.5') or whole millicores ('500m').
_CPU = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?P<milli>m?)")
_MEMORY = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
# Common ways people misspell a memory unit ('16GB', '16g', '512 mb'): we suggest the binary unit.
_MEMORY_TYPO = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgtpe])(?:i?b)?", re.IGNORECASE)
# Docker image references: registry[:port]/path[:tag][@sha256:digest]; no spaces or shell junk.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
# Counts above this are typos, and would overflow 32-bit columns downstream anyway.
MAX_COUNT = 1000
# Kubernetes label values (project names end up as labels) are limited to 63 characters.
MAX_PROJECT_LENGTH = 63
# A run limited to seconds cannot even start (image pull, scheduling): such a limit is a typo.
# Quantities longer than this are not real requests; bounding them keeps int() and float() cheap.
_MAX_NUMBER_TEXT = 18


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean X?)' for the closest choice to `word`, or '' when none is close."""
    close = closest(word, choices)
    return f" (did you mean {close}?)" if close else ""


def to_duration(text: str, default_unit: str | None = None) -> timedelta | None:
    """parse_duration, but absurdly long durations become timedelta.max instead of raising."""
    try:
        return parse_duration(text, default_unit)
    except (OverflowError, ValueError):
        # Only reachable with numbers far beyond any limit; callers reject timedelta.max.
        return timedelta.max


def parse_whole(text: str, option: str, low: int, high: int) -> int:
    """Parse a whole number in low..high."""
    if not _WHOLE.fullmatch(text):
        raise SpecError(f"{option} expects a whole number, got {show(text)}", option=option)
    digits = text.lstrip("0") or "0"
    if len(digits) > _MAX_NUMBER_TEXT or not low <= int(digits) <= high:
        raise SpecError(
            f"{option} must be between {low} and {high}, got {show(text)}", option=option
        )
    return int(digits)


def parse_hours(text: str, option: str) -> timedelta:
    """Parse a number of hours such as '12' or '1.5'."""
    if not _DECIMAL.fullmatch(text):
        hint = ""
        if to_duration(text) is not None:
            hint = f" (for other units use --max-runtime {text})"
        raise SpecError(
            f"{option} expects a number of hours such as 12 or 1.5, got {show(text)}{hint}",
            option=option,
        )
    return to_duration(text, "h") or timedelta(0)


def parse_duration_option(text: str, option: str) -> timedelta:
    """Parse a duration option such as '90m', '12h', '1h30m' or '2d' (a unit is required)."""
    if is_bare_number(text):
        # A bare number used to mean hours: `--max-runtime 90` meant 90 h, rarely what was meant.
        number = show(text).strip("'")
        raise SpecError(f"{option} needs a unit, got {show(text)}: add a unit: {number}m or {number}h",
                        option=option)
    value = to_duration(text)
    if value is None:
        raise SpecError(
            f"{option} expects a duration such as 90m, 12h, 1h30m or 2d (each unit once), got {show(text)}",
            option=option,
        )
    return value


def check_duration(value: timedelta, option: str, limit: timedelta, given: str,
                   minimum: timedelta | None = None) -> timedelta:
    """Check a duration is positive, at least `minimum` (when given) and at most `limit`."""
    if value <= timedelta(0):
        raise SpecError(f"{option} must be more than 0, got {show(given)}", option=option)
    if minimum is not None and value < minimum:
        raise SpecError(
            f"{option} must be at least {format_duration(minimum)}, got {show(given)}", option=option
        )
    if value > limit:
        raise SpecError(
            f"{option} must be at most {format_duration(limit)}, got {show(given)}", option=option
        )
    return value


def parse_cpu(text: str, option: str = "--cpu") -> str:
    """Check a Kubernetes CPU quantity: cores ('4', '2.5') or millicores ('500m')."""
    match = _CPU.fullmatch(text)
    if not match or len(text) > _MAX_NUMBER_TEXT or (match["milli"] and "." in match["num"]):
        raise SpecError(
            f"{option} expects CPU cores such as 4 or 2.5, or millicores such as 500m, "
            f"got {show(text)}",
            option=option,
        )
    if float(match["num"]) == 0:
        raise SpecError(f"{option} must be more than 0, got {show(text)}", option=option)
    return text


def parse_memory(text: str, option: str = "--memory") -> str:
    """Check a Kubernetes memory quantity such as '16Gi', '512Mi', '1G' or '1024' (bytes)."""
    match = _MEMORY.fullmatch(text)
    # A fraction of a byte makes no sense; fractions are fine with a unit ('1.5Gi').
    if match and len(text) <= _MAX_NUMBER_TEXT and (match["unit"] or "." not in match["num"]):
        if float(match["num"]) == 0:
            raise SpecError(f"{option} must be more than 0, got {show(text)}", option=option)
        return text
    hint = ""
    typo = _MEMORY_TYPO.fullmatch(text.strip())
    if typo:
        hint = f" (did you mean {typo[1]}{typo[2].upper()}i?)"
    raise SpecError(
        f"{option} expects a size such as 16Gi, 512Mi, 1G or 1024 (bytes), got {show(text)}{hint}",
        option=option,
    )


def parse_image(text: str, option: str = "--image") -> str:
    """Check a container image reference such as 'python:3.11-slim' or 'ghcr.io/org/img:tag'."""
    if not _IMAGE.fullmatch(text) or len(text) > 255:
        raise SpecError(
            f"{option} expects an image such as 'python:3.11-slim' or 'ghcr.io/org/image:tag', "
            f"got {show(text)}",
            option=option,
        )
    return text


def parse_gpu_type(text: str, catalog: dict[str, GpuType], option: str = "--gpu-type") -> str:
    """Return the catalog key `text` names (case-insensitively)."""
    if not catalog:
        raise SpecError(f"{option}: no GPU types are configured", option=option)
    if text in catalog:
        return text
    folded = [key for key in catalog if key.casefold() == text.casefold()]
    if len(folded) == 1:
        return folded[0]
    allowed = ", ".join(catalog)
    raise SpecError(
        f"{option} {show(text)} is not available{did_you_mean(text, list(catalog))}; "
        f"use one of: {allowed}",
        option=option,
    )


def parse_exit_codes(text: str, option: str = "--retry-on-exit-codes") -> frozenset[int]:
    """Parse a comma list of exit codes in 1..255, e.g. '42,75'."""
    codes = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise SpecError(
                f"{option} has an empty entry in {show(text)}: give codes like 42,75",
                option=option,
            )
        if not _WHOLE.fullmatch(part):
            raise SpecError(
                f"{option} expects exit codes like 42,75, got {show(part)} in {show(text)}",
                option=option,
            )
        digits = part.lstrip("0")
        if not digits:
            raise SpecError(
                f"{option}: exit code 0 means success and is never retried; use codes 1..255",
                option=option,
            )
        if len(digits) > 3 or int(digits) > 255:
            raise SpecError(
                f"{option}: exit codes are 1..255, got {show(part)}", option=option
            )
        codes.add(int(digits))
    return frozenset(codes)


def parse_project(text: str, projects: tuple[str, ...], option: str = "--project") -> str:
    """Check a project name against the configured projects (or, if none, its shape)."""
    if projects:
        if text in projects:
            return text
        raise SpecError(
            f"{option} {show(text)} is not a known project{did_you_mean(text, projects)}; "
            f"use one of: {', '.join(projects)}",
            option=option,
        )
    if not re.fullmatch(DNS1123_LABEL, text) or len(text) > MAX_PROJECT_LENGTH:
        raise SpecError(
            f"{option} {show(text)} is not allowed: use up to {MAX_PROJECT_LENGTH} lowercase "
            f"letters, digits and '-', starting and ending with a letter or digit",
            option=option,
        )
    return text


def parse_checkpoint_glob(text: str, option: str = "--checkpoint-glob") -> str:
    """Check a checkpoint glob is a non-empty relative pattern that stays inside the directory."""
    if not text.strip():
        raise SpecError(f"{option} must not be empty (e.g. '*.pt')", option=option)
    # The glob is matched under EXPBOT_CHECKPOINT_DIR; it must not reach outside it.
    if text.startswith("/") or text.startswith("~"):
        raise SpecError(
            f"{option} {show(text)} must be relative to the checkpoint directory (e.g. 'ckpt/*.pt')",
            option=option,
        )
    if ".." in text.split("/"):
        raise SpecError(
            f"{option} {show(text)} must stay inside the checkpoint directory: no '..'",
            option=option,
        )
    return text


def parse_pattern(text: str, option: str = "--give-up-on") -> str:
    """Check a give-up log pattern is not blank (a blank one would match every line)."""
    if not text.strip():
        raise SpecError(
            f"{option} needs a non-empty log text (e.g. 'CUDA out of memory')", option=option
        )
    return text
