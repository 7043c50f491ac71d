"""expbot's own errors at the Kubernetes boundary, each chained from the client's ApiException."""
from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from core.errors import ExpbotError
from core.policy import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")


class KubeError(ExpbotError):
    """Something the Kubernetes API refused or could not do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFound(KubeError):
    """The object does not exist (404)."""


class KubeConflict(KubeError):
    """It already exists, or changed since it was read (409)."""


class KubeForbidden(KubeError):
    """expbot's service account may not do this (401/403): its Role lacks a verb."""


class KubeInvalid(KubeError):
    """The API rejected the object as invalid (400/422): a bug or a bad configuration."""


class KubeTransient(KubeError):
    """Worth retrying: the API is overloaded, restarting or unreachable (429, 5xx, connection errors)."""


class WatchExpired(KubeError):
    """410 Gone: the resourceVersion is too old; list again."""


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    except (ValueError, AttributeError):
        return str(e.reason)


def translate(e: Exception) -> KubeError:
    """The expbot error for an exception raised by the kubernetes client (or urllib3 under it)."""
    if isinstance(e, KubeError):
        return e
    if not isinstance(e, ApiException):
        return KubeTransient(f"cannot reach the Kubernetes API: {e}")
    status, message = e.status, _message(e)
    if status == 0 or status is None:
        # The client reports connection-level failures as ApiException(status=0).
        return KubeTransient(f"cannot reach the Kubernetes API: {e.reason}", status)
    kind: type[KubeError]
    if status == 404:
        kind = KubeNotFound
    elif status == 409:
        kind = KubeConflict
    elif status in (401, 403):
        kind = KubeForbidden
    elif status == 410:
        kind = WatchExpired
    elif status in (400, 422):
        kind = KubeInvalid
    elif status == 429 or status >= 500:
        kind = KubeTransient
    else:
        kind = KubeError
    return kind(f"Kubernetes API {status}: {message}", status)


def call(
    fn: Callable[[], T], *, attempts: int = 5, base_delay: float = 0.2, max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call the API, retrying transient failures with jittered exponential backoff; raise expbot errors."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (ApiException, Urllib3Error, OSError) as e:
            error = translate(e)
            if not isinstance(error, KubeTransient) or attempt == attempts:
                raise error from e
            # The module's own functions as the generator: one shared, and tests can fix its draws.
            delay = Backoff(timedelta(seconds=base_delay), timedelta(seconds=max_delay)).delay(
                attempt, random).total_seconds()  # type: ignore[arg-type]
            log.warning("%s; retrying in %.1fs (%d/%d)", error, delay, attempt, attempts)
            sleep(delay)
    raise AssertionError("unreachable")
