"""Name checks for the launch grammar: experiment names, environment variables and sweep keys."""
from __future__ import annotations

import math
import re

from core.errors import SpecError
from core.grammar_text import show
from core.spec import DNS1123_LABEL, ENV_NAME, MAX_NAME_LENGTH, RESERVED_ENV_PREFIX

SWEEP_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
