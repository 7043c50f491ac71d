"""Finding the experiment a person means: by name, by id, or by a unique id prefix."""
from __future__ import annotations

from core.errors import NotFound
from core.grammar_text import show
from core.model import Experiment
from core.ports import ExperimentRepository

MIN_PREFIX = 4  # shorter prefixes match too much to be meant


def find_experiment(repo: ExperimentRepository, ref: str, hint: str = "") -> Experiment:
    """The experiment named `ref` (the newest of that name), else the one whose id starts with it."""
    found = repo.get_by_name(ref)
    if found is not None:
        return found
    if len(ref) >= MIN_PREFIX:
        matches = repo.by_id_prefix(ref, limit=2)
        exact = [e for e in matches if e.id == ref]
        if exact or len(matches) == 1:
            return (exact or matches)[0]
        if matches:
            ids = ", ".join(e.id[:12] for e in matches)
            raise NotFound(f"{show(ref)} is the start of more than one experiment id ({ids}, ...): give more of it")
    raise NotFound(f"no experiment named {show(ref)}{hint}")
