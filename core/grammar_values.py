"""Value checkers for the launch grammar: each turns one option's text into a checked value."""
from __future__ import annotations

import difflib
import math
import re
from datetime import timedelta

from core.durations import format_duration, parse_duration
from core.errors import SpecError
from core.spec import DNS1123_LABEL, ENV_NAME, MAX_NAME_LENGTH, RESERVED_ENV_PREFIX, GpuType

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
SWEEP_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Counts above this are typos, and would overflow 32-bit columns downstream anyway.
MAX_COUNT = 1000
# Kubernetes label values (project names end up as labels) are limited to 63 characters.
MAX_PROJECT_LENGTH = 63
# Quantities longer than this are not real requests; bounding them keeps int() and float() cheap.
_MAX_NUMBER_TEXT = 18


def show(text: str, limit: int = 60) -> str:
    """Quote user text for a one-line message: control characters escaped, long text shortened."""
    # ascii('\n') is "'\\n'": drop its quotes to get the escape sequence alone.
    cleaned = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 3] + "..."
    return f"'{cleaned}'"


def bare(text: str, limit: int = 40) -> str:
    """Like show(), without the quotes: for option names in messages ("unknown option --gpu")."""
    return show(text, limit)[1:-1]


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean X?)' for the closest choice to `word`, or '' when none is close."""
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]}?)" if close else ""


def to_duration(text: str, default_unit: str = "h") -> timedelta | None:
    """parse_duration, but absurdly long durations become timedelta.max instead of raising."""
    try:
        return parse_duration(text, default_unit)
    except (OverflowError, ValueError):
        # Only reachable with numbers far beyond any limit; callers reject timedelta.max.
        return timedelta.max


def check_name(name: str) -> str:
    """Check an experiment name is a DNS-1123 label of at most MAX_NAME_LENGTH characters."""
    if not re.fullmatch(DNS1123_LABEL, name):
        example = suggest_name(name)
        hint = f" (e.g. {show(example)})" if example and example != name else ""
        raise SpecError(
            f"name {show(name)} is not allowed: use lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit{hint}",
            option="name",
        )
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(
            f"name {show(name)} is too long ({len(name)} characters): use at most {MAX_NAME_LENGTH}",
            option="name",
        )
    return name


def check_member_names(name: str, size: int) -> None:
    """Check the longest sweep member name (NAME-size) still fits MAX_NAME_LENGTH."""
    longest = f"{name}-{size}"
    if len(longest) > MAX_NAME_LENGTH:
        room = MAX_NAME_LENGTH - len(str(size)) - 1
        raise SpecError(
            f"name {show(name)} is too long for a sweep of {size}: member names like "
            f"{show(longest)} must be at most {MAX_NAME_LENGTH} characters, so use a name of "
            f"at most {room}",
            option="name",
        )


def suggest_name(name: str) -> str:
    """Turn an arbitrary name into the nearest DNS-1123 label ('' when nothing usable is left)."""
    label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return label[:MAX_NAME_LENGTH].strip("-")


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
    """Parse a duration option such as '90m', '12h', '1h30m' or '2d' (bare numbers are hours)."""
    value = to_duration(text, "h")
    if value is None:
        raise SpecError(
            f"{option} expects a duration such as 90m, 12h, 1h30m or 2d, got {show(text)}",
            option=option,
        )
    return value


def check_duration(value: timedelta, option: str, limit: timedelta, given: str) -> timedelta:
    """Check a duration is positive and at most `limit`."""
    if value <= timedelta(0):
        raise SpecError(f"{option} must be more than 0, got {show(given)}", option=option)
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


def parse_env(text: str, option: str = "--env") -> tuple[str, str]:
    """Split 'KEY=VALUE' and check KEY is a usable, non-reserved variable name."""
    key, sep, value = text.partition("=")
    if not sep:
        raise SpecError(f"{option} expects KEY=VALUE, got {show(text)}", option=option)
    if not re.fullmatch(ENV_NAME, key):
        raise SpecError(
            f"{option} name {show(key)} is not allowed: use letters, digits and '_', "
            f"not starting with a digit (e.g. MY_VAR=1)",
            option=option,
        )
    if key.startswith(RESERVED_ENV_PREFIX):
        raise SpecError(
            f"{option} {show(key)}: names starting with {RESERVED_ENV_PREFIX} are set by expbot "
            f"itself; pick another name",
            option=option,
        )
    return key, value


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


def parse_sweep(text: str, option: str = "--sweep") -> tuple[str, tuple[str, ...]]:
    """Split 'key=v1,v2,...' into the key and its distinct, non-empty values."""
    key, sep, rest = text.partition("=")
    if not sep:
        raise SpecError(f"{option} expects key=v1,v2,..., got {show(text)}", option=option)
    if not SWEEP_KEY.fullmatch(key):
        raise SpecError(
            f"{option} key {show(key)} is not allowed: use letters, digits and '_', "
            f"not starting with a digit (e.g. lr=0.1,0.01)",
            option=option,
        )
    if key.upper().startswith(RESERVED_ENV_PREFIX):
        raise SpecError(
            f"{option} key {show(key)}: sweep keys become environment variables and names "
            f"starting with {RESERVED_ENV_PREFIX} are reserved; pick another key",
            option=option,
        )
    values = tuple(value.strip() for value in rest.split(","))
    if not all(values):
        raise SpecError(
            f"{option} {key} has an empty value in {show(text)}: give values like {key}=1,2,3",
            option=option,
        )
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise SpecError(
                f"{option} {key} lists the value {show(value)} twice", option=option
            )
        seen.add(value)
    return key, values


def check_sweep_size(sweeps: dict[str, tuple[str, ...]], limit: int, option: str = "--sweep") -> int:
    """Return the number of experiments the sweep makes, or raise if that exceeds `limit`."""
    size = math.prod(len(values) for values in sweeps.values())
    if size > limit:
        sizes = " x ".join(str(len(values)) for values in sweeps.values())
        raise SpecError(
            f"{option} makes {size} experiments ({sizes}); at most {limit} are allowed",
            option=option,
        )
    return size
