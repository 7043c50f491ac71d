"""Did-you-mean: the one rule every "unknown X" message uses to suggest what was meant."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.5  # difflib's similarity ratio below which a word is not taken for a typo ("cpu_price" -> cpu_per_hour is 0.57)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` most likely meant, ignoring case, or None when none is close.

    A choice the word begins is close too: difflib finds 'ttl' too far from 'ttl_after_finished'.
    """
    by_lower = {choice.lower(): choice for choice in choices}
    typed = word.lower()
    if typed in by_lower:
        return by_lower[typed]
    found = difflib.get_close_matches(typed, list(by_lower), n=1, cutoff=CUTOFF)
    if found:
        return by_lower[found[0]]
    return next((choice for lower, choice in by_lower.items() if typed and lower.startswith(typed)), None)
