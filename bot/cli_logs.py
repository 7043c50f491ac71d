"""`expbot logs --follow`: follow an experiment through its restarts, until it has ended.

Like `sky jobs logs`: one attempt's end is not the end of the run when expbot restarts it, so the
output goes on with the next attempt after a divider naming where it resumed from.
"""
from __future__ import annotations

import sys
import time
from pathlib import PurePath
from typing import Any

_POLL_SECONDS = 0.5


def follow_experiment(reader: Any, experiment_id: str, number: int, tail: int | None) -> None:
    """Print attempt `number`'s output (its last `tail` lines first) and every later attempt's, until the end."""
    backend = reader.backend
    shown = _first(backend, experiment_id, number, tail)
    while True:
        shown = _print_new(backend, experiment_id, number, shown)
        exp = _load(reader, experiment_id)
        if exp is None:
            return
        later = [a for a in exp.attempts if a.number > number]
        if later:
            # Read once more: the ended attempt's last lines may have landed since the read above.
            _print_new(backend, experiment_id, number, shown)
            following = later[0]
            if number:  # the first attempt of an experiment that had none needs no divider
                _write(divider(following.number, following.resumed_from))
            number, shown = following.number, 0
            continue
        if exp.is_terminal:
            _print_new(backend, experiment_id, number, shown)
            return
        time.sleep(_POLL_SECONDS)


def divider(number: int, resumed_from: str | None) -> str:
    """The line between two attempts' output."""
    where = f"resumed from {PurePath(resumed_from).name}" if resumed_from else "from the start (no checkpoint)"
    return f"\n— attempt {number} started, {where} —\n"


def _first(backend: Any, experiment_id: str, number: int, tail: int | None) -> int:
    """Print the start (or the tail) of an attempt's output; how many characters of it are shown."""
    if not number:
        return 0
    text = backend.logs(experiment_id, number, tail)
    _write(text)
    return len(backend.logs(experiment_id, number)) if tail else len(text)


def _print_new(backend: Any, experiment_id: str, number: int, shown: int) -> int:
    """Print what the attempt wrote since `shown` characters; the new count."""
    if not number:
        return 0
    text = backend.logs(experiment_id, number)
    _write(text[shown:])
    return max(shown, len(text))


def _load(reader: Any, experiment_id: str) -> Any:
    with reader.reading() as views:
        return views.experiments.get(experiment_id)


def _write(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
