"""Prometheus's HTTP API: one GET, its `data` back, or one clear error."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.metrics import MetricsUnavailable


def redact(url: str) -> str:
    """The URL without user:password, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def api_get(http: httpx.Client, base_url: str, path: str, params: dict[str, str]) -> Any:
    """GET base_url/api/v1/<path>; the reply's `data`, or MetricsUnavailable saying what went wrong."""
    where = redact(base_url)
    try:
        response = http.get(f"{base_url}/api/v1/{path}", params=params)
        body = response.json()
    except (httpx.HTTPError, ValueError) as e:
        raise MetricsUnavailable(f"Prometheus at {where} did not answer: {e}") from e
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise MetricsUnavailable(
            f"Prometheus at {where} refused {params.get('query', path)!r} (HTTP {response.status_code}): "
            f"{error or 'no error text'}"
        )
    if "data" not in body:
        raise MetricsUnavailable(f"Prometheus at {where} sent a reply without data")
    return body["data"]
