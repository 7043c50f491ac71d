"""Who a log line is about (experiment, attempt, error id), carried by a contextvar across calls.

Code that works on one experiment binds it once (`with bound(experiment_id=..., attempt=2):`) and
every line logged meanwhile, by any module, carries it: the JSON log format writes it as fields.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# The fields a log line may carry about what it concerns; anything else is not context.
FIELDS = ("experiment", "experiment_id", "attempt", "error_id")

_current: ContextVar[dict[str, Any]] = ContextVar("expbot_log_context", default={})


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add these fields (None ones are skipped) to every log line within the block."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    token = _current.set(_current.get() | {k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _current.reset(token)


def current() -> dict[str, Any]:
    """The fields bound in this context (a copy)."""
    return dict(_current.get())
