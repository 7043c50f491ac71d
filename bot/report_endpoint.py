"""POST /report: training containers report heartbeats and checkpoints, authenticated per attempt.

    POST /report
    Authorization: Bearer <EXPBOT_REPORT_TOKEN>
    {"experiment_id": "...", "attempt": 1, "checkpoint": "/ckpt/ckpt-000100.pt", "step": 100}

204 stored; 400 bad body (plain text saying what); 401 missing or wrong token; 405 not POST;
413 body over 16 KiB; 500 "internal error (id ...)" with the details in the log only.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from bot.http_server import WsgiApp
from core.errors import ExpbotError
from core.ports import Clock
from core.progress import ProgressReport, ProgressStore, parse_report, token_matches

log = logging.getLogger(__name__)

PATH = "/report"
MAX_BODY = 16 * 1024  # a report is ~200 bytes: anything near this is not one

_STATUS = {
    204: "204 No Content", 400: "400 Bad Request", 401: "401 Unauthorized", 404: "404 Not Found",
    405: "405 Method Not Allowed", 413: "413 Content Too Large", 500: "500 Internal Server Error",
}


class _Refused(Exception):
    """An answer other than 204, with the plain-text reason the caller sees."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


def report_app(store: ProgressStore, secret: str, clock: Clock) -> WsgiApp:
    """A WSGI app serving POST /report into `store`; tokens are checked against `secret`."""
    if not secret:
        # An empty key would make every token computable by anyone.
        raise ValueError("report_app needs a non-empty secret (EXPBOT_REPORT_SECRET)")

    def handle(environ: dict[str, Any]) -> None:
        if environ.get("PATH_INFO") != PATH:
            raise _Refused(404, "not found")
        if environ.get("REQUEST_METHOD") != "POST":
            raise _Refused(405, "use POST", [("Allow", "POST")])
        body = _read_body(environ)
        token = _bearer_token(environ)
        report = _parse(body, clock)
        if not token_matches(secret, report.experiment_id, report.attempt, token):
            raise _Refused(401, "the token is not this attempt's (use EXPBOT_REPORT_TOKEN)", _CHALLENGE)
        store.record(report)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            handle(environ)
        except _Refused as refused:
            return _answer(start_response, refused.status, refused.message, refused.headers)
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("error %s handling a progress report", error_id, extra={"error_id": error_id})
            return _answer(start_response, 500, f"internal error (id {error_id})")
        start_response(_STATUS[204], [])
        return []

    return app


_CHALLENGE = [("WWW-Authenticate", 'Bearer realm="expbot"')]


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, refusing one over MAX_BODY before reading it when its length is declared."""
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise _Refused(400, f"bad Content-Length {declared[:20]!r}") from None
        if length > MAX_BODY:
            raise _Refused(413, f"the body is {length} bytes; a report may have at most {MAX_BODY}")
    # Read one byte more than allowed: a body without a declared length is caught here too.
    body = environ["wsgi.input"].read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise _Refused(413, f"the body is over {MAX_BODY} bytes, the most a report may have")
    return body


def _bearer_token(environ: dict[str, Any]) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _Refused(401, "missing 'Authorization: Bearer <token>' header (use EXPBOT_REPORT_TOKEN)", _CHALLENGE)
    return token.strip()


def _parse(body: bytes, clock: Clock) -> ProgressReport:
    """The report, stamped with expbot's time; a bad body is a 400 naming what is wrong."""
    try:
        return parse_report(body, clock.now())
    except ExpbotError as e:
        raise _Refused(400, str(e)) from None


def _answer(start_response: Callable[..., Any], status: int, message: str,
            headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(_STATUS[status], [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Content-Length", str(len(body))), *(headers or [])])
    return [body]
