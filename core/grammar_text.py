"""Quoting user text in the launch grammar's one-line error messages."""
from __future__ import annotations


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
