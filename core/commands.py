"""Commands: imperative requests from Slack, the CLI or a scheduler, each handled once."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.spec import LaunchRequest


class Command(BaseModel):
    model_config = ConfigDict(frozen=True)


class LaunchExperiment(Command):
    """Launch what a `launch` line describes (one experiment, or a sweep group)."""

    text: str
    owner: str
    idempotency_key: str | None = None  # same key again -> the experiments already launched
    channel: str | None = None  # where its updates should go (the Slack channel it came from)
    # The text already parsed by whoever checked it before answering (Slack's ack): parsed once per delivery.
    request: LaunchRequest | None = None


class StopExperiment(Command):
    """Stop an experiment by name; only its owner or an admin may."""

    name: str
    by: str
    as_admin: bool = False  # the caller verified that `by` is an admin
    reason: str = ""


class ApproveLaunch(Command):
    """Let a launch that would overrun a budget run anyway (every member of a sweep)."""

    launch_id: str
    by: str
    as_approver: bool = False  # the caller verified that `by` is an approver


class DenyLaunch(Command):
    """Refuse a launch waiting for approval."""

    launch_id: str
    by: str
    as_approver: bool = False
    reason: str = ""


class ExpireApprovals(Command):
    """Deny every approval request older than the configured time to live."""


class SetBudget(Command):
    """Set a monthly budget for a project or a user (admins only)."""

    scope: str  # "project" or "user"
    name: str
    monthly_limit: float
    by: str
    as_admin: bool = False


class KeepExperiment(Command):
    """Keep an idle experiment running for `hours` without warnings; only its owner or an admin may."""

    name: str
    by: str
    as_admin: bool = False  # the caller verified that `by` is an admin
    hours: float = Field(gt=0, le=24 * 7)


class PostDigest(Command):
    """Post every daily digest that is due and not yet posted (each once per day overall)."""

    # Only a day missed while serve was down or Slack failed: nothing before the first digest is
    # posted at its minute (a fresh install's first start posts nothing).
    missed_only: bool = False


class SendBudgetAlerts(Command):
    """Send every budget alert that is due (each threshold once a month)."""
