"""Who may use the sandbox page: this machine's browsers, or whoever brings EXPBOT_SANDBOX_TOKEN.

The page can launch commands, so other web pages open in the same browser must not drive it:
a page's own requests name this server in Host (another name pointing at 127.0.0.1, DNS
rebinding, is refused), and an action must be JSON from this page's own origin (a cross-site
form or text/plain post, which browsers send without asking, is refused).
"""
from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.sandbox.config import is_loopback

COOKIE = "expbot_sandbox"


def admit(environ: dict[str, Any], token: str | None) -> str | None | bool:
    """None: let in; a Set-Cookie value: let in and remember the token; False: refuse."""
    if token:
        given = parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]
        cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        remembered = cookies[COOKIE].value if COOKIE in cookies else ""
        if remembered and hmac.compare_digest(remembered.encode(), token.encode()):
            return None
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return f"{COOKIE}={token}; Path=/sandbox; HttpOnly; SameSite=Strict"
    if is_loopback(environ.get("REMOTE_ADDR", "")) and is_loopback(_hostname(environ.get("HTTP_HOST", ""))):
        return None
    return False


def may_act(environ: dict[str, Any]) -> bool:
    """An action: JSON (cross-site pages cannot send it unasked), from this page's origin if the browser says."""
    if environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != "application/json":
        return False
    origin = environ.get("HTTP_ORIGIN")
    if origin and urlsplit(origin).netloc != environ.get("HTTP_HOST", ""):
        return False
    return environ.get("HTTP_SEC_FETCH_SITE", "same-origin") in ("same-origin", "none")


def _hostname(host: str) -> str:
    """The name in a Host header, without its port ('[::1]:3000' -> '::1')."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
