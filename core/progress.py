"""Progress reported by a training container over HTTP: per-attempt tokens, reports, their store.

On Kubernetes expbot cannot look into the checkpoint volume or touch a heartbeat file, so the
container tells it instead: each report is a heartbeat, and may name a checkpoint it just wrote.
A report is authenticated by a token that only expbot (holding the secret) can mint for one
(experiment, attempt), so a container can speak for its own attempt and nobody else's.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from core.errors import SpecError

MAX_EXPERIMENT_ID = 64
MAX_CHECKPOINT = 1024
# The database columns are 32-bit (attempt) and 64-bit (step) integers: larger ones are refused here.
MAX_ATTEMPT = 2**31 - 1
MAX_STEP = 2**63 - 1


def attempt_token(secret: str, experiment_id: str, attempt: int) -> str:
    """The token that authenticates reports of one attempt: hex HMAC-SHA256 of "<experiment_id>/<attempt>"."""
    message = f"{experiment_id}/{attempt}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def token_matches(secret: str, experiment_id: str, attempt: int, token: object) -> bool:
    """Whether `token` is that attempt's token (constant-time comparison)."""
    if not isinstance(token, str):
        return False
    expected = attempt_token(secret, experiment_id, attempt).encode()
    # Bytes, not str: compare_digest raises on non-ASCII str, and a token comes from outside.
    return hmac.compare_digest(expected, token.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class ProgressReport:
    """One report of an attempt: always a heartbeat at `at`, and a new checkpoint when one is named."""

    experiment_id: str
    attempt: int
    at: datetime  # when expbot received it: the container's own clock is not trusted
    checkpoint: str | None = None
    step: int | None = None


def parse_report(body: bytes, at: datetime) -> ProgressReport:
    """The report in a JSON request body; SpecError (naming the field) says what is wrong with it.

    Unknown fields are ignored, so that newer training scripts may send more than this expbot reads.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SpecError("the body is not JSON: send a JSON object such as "
                        '{"experiment_id": "...", "attempt": 1}') from None
    if not isinstance(data, dict):
        raise SpecError(f"the body must be a JSON object, not {_json_type(data)}")
    return ProgressReport(
        experiment_id=_experiment_id(data), attempt=_attempt(data), at=at,
        checkpoint=_checkpoint(data), step=_step(data),
    )


class ProgressStore(Protocol):
    """The last heartbeat and newest checkpoint of every attempt that reported."""

    def record(self, report: ProgressReport) -> None:
        """Store a report: a heartbeat, and when it names one, the attempt's newest checkpoint."""
        ...

    def latest_checkpoint(self, experiment_id: str) -> str | None:
        """The newest checkpoint reported by any attempt of the experiment (ties: the higher attempt)."""
        ...

    def heartbeats(self, since: datetime) -> dict[tuple[str, int], datetime]:
        """(experiment_id, attempt) -> last report time, for every attempt heard from at or after `since`."""
        ...


def _experiment_id(data: dict[str, Any]) -> str:
    value = data.get("experiment_id")
    if value is None:
        raise SpecError("experiment_id is missing (use EXPBOT_EXPERIMENT_ID)", option="experiment_id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_EXPERIMENT_ID or not value.isprintable():
        raise SpecError(
            f"experiment_id must be a string of 1 to {MAX_EXPERIMENT_ID} printable characters, "
            f"got {_describe(value)}", option="experiment_id",
        )
    return value


def _attempt(data: dict[str, Any]) -> int:
    value = data.get("attempt")
    if value is None:
        raise SpecError("attempt is missing (use EXPBOT_ATTEMPT)", option="attempt")
    if not _is_int(value) or not 1 <= value <= MAX_ATTEMPT:
        raise SpecError(f"attempt must be an integer from 1 to {MAX_ATTEMPT}, got {_describe(value)}",
                        option="attempt")
    return value


def _checkpoint(data: dict[str, Any]) -> str | None:
    value = data.get("checkpoint")
    if value is None:
        return None
    # An empty path would read as "start fresh" on the next attempt and lose the real checkpoint.
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CHECKPOINT or not value.isprintable():
        raise SpecError(
            f"checkpoint must be a string of 1 to {MAX_CHECKPOINT} printable characters, got {_describe(value)}",
            option="checkpoint",
        )
    return value


def _step(data: dict[str, Any]) -> int | None:
    value = data.get("step")
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_STEP:
        raise SpecError(f"step must be an integer >= 0, got {_describe(value)}", option="step")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not attempt 1


def _describe(value: object) -> str:
    """A short, safe rendering of a bad value for an error message."""
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return f"a string of {len(value)} characters {shown!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 40 else f"a number of {len(text)} digits"
    return _json_type(value)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
