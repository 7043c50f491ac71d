"""expbot's own exception hierarchy: every error a user can cause has a clear message."""
from __future__ import annotations


class ExpbotError(Exception):
    """Base of every error expbot raises on purpose; its message is safe to show a user."""


class OptionError(ExpbotError):
    """A launch refused because of one of its options; `option` names it (e.g. '--gpus', 'name')."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class SpecError(OptionError):
    """Bad launch input: names the option, what was given and what is allowed."""


class NotFound(ExpbotError):
    """The named experiment (or attempt) does not exist."""


class IllegalTransition(ExpbotError):
    """An experiment was asked to move to a state its current state does not allow."""


class ConcurrentUpdate(ExpbotError):
    """Somebody else saved the experiment first; reload and try again."""


class DuplicateLaunch(ExpbotError):
    """A launch with this idempotency key already exists."""

    def __init__(self, idempotency_key: str):
        super().__init__(f"a launch with idempotency key {idempotency_key!r} already exists")
        self.idempotency_key = idempotency_key


class NameInUse(OptionError):
    """An active experiment already has this name."""

    def __init__(self, message: str, option: str | None = "name"):
        super().__init__(message, option)


class NotAllowed(ExpbotError):
    """The actor may not do this (e.g. stop somebody else's experiment)."""


class CapacityError(OptionError):
    """The request can never fit the backend (e.g. more GPUs than it has in total)."""

    # Every backend's "can never fit" is about the GPU count today.
    def __init__(self, message: str, option: str | None = "--gpus"):
        super().__init__(message, option)


class DatabaseUnavailable(ExpbotError):
    """The database cannot be used now (read-only, locked, full, gone); the message names it and why."""
