"""Commands: imperative requests from Slack, the CLI or a scheduler, each handled once."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Command(BaseModel):
    model_config = ConfigDict(frozen=True)


class LaunchExperiment(Command):
    """Launch what a `launch` line describes (one experiment, or a sweep group)."""

    text: str
    owner: str
    idempotency_key: str | None = None  # same key again -> the experiments already launched
    channel: str | None = None  # where its updates should go (the Slack channel it came from)


class StopExperiment(Command):
    """Stop an experiment by name; only its owner or an admin may."""

    name: str
    by: str
    as_admin: bool = False  # the caller verified that `by` is an admin
    reason: str = ""
