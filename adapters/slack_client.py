"""Slack's Web API client: retries 429s (honouring Retry-After), 5xx and dropped connections."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler

# observe(method, outcome): outcome is "ok", "error" (Slack answered ok: false), "failed" (no answer),
# or "rate_limited" for each 429 response, retried or not.
Observer = Callable[[str, str], None]


class _ObservedClient(WebClient):
    """A WebClient that reports every call's method and outcome (for serve's /metrics)."""

    observe: Observer

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        """WebClient's call (retries included), then its outcome to `observe`."""
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError:
            self.observe(api_method, "error")
            raise
        except Exception:
            self.observe(api_method, "failed")
            raise
        self.observe(api_method, "ok")
        return response


class _RateLimitCounter(RetryHandler):
    """Sees every response before the retrying handlers do; counts the 429s and retries nothing itself."""

    def __init__(self, observe: Observer) -> None:
        super().__init__(max_retry_count=1_000_000)
        self._observe = observe

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if response is not None and response.status_code == 429:
            self._observe(request.url.rstrip("/").rsplit("/", 1)[-1], "rate_limited")
        return False


def make_web_client(token: str, base_url: str | None = None, observe: Observer | None = None) -> WebClient:
    """A WebClient that retries 429s (honouring Retry-After), 5xx and dropped connections; `observe` sees each call."""
    base_url = base_url or WebClient.BASE_URL
    if observe is None:
        client, counters = WebClient(token=token, base_url=base_url, timeout=15), []
    else:
        client = _ObservedClient(token=token, base_url=base_url, timeout=15)
        client.observe, counters = observe, [_RateLimitCounter(observe)]
    client.retry_handlers.extend([
        *counters,  # first: it must see a 429 before the handler that retries it
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
        ConnectionErrorRetryHandler(max_retry_count=2),
    ])
    return client
