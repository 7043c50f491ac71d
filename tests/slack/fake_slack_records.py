"""What the fake Slack Web API records, and how it decodes requests.

Dataclass records (calls, messages, ephemerals, views, files, response_url posts), the
``SlackError`` that handlers raise to answer ``{"ok": false, "error": ...}``, and the decoding of
request bodies the way slack_sdk sends them (form-encoded, JSON, multipart).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

JSON_FIELDS = ("blocks", "attachments", "view", "files", "metadata")


@dataclass
class Call:
    """One request to the server. ``args`` has JSON fields (blocks, view, files...) decoded."""

    method: str
    args: dict[str, Any]
    token: str | None
    time: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    http_method: str = "POST"

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class Message:
    """A posted message; chat.update edits it in place and appends the old version to ``edits``."""

    channel: str
    ts: str
    text: str | None
    blocks: list | None
    attachments: list | None = None
    thread_ts: str | None = None
    user: str | None = None
    files: list[dict] = field(default_factory=list)
    edits: list[dict] = field(default_factory=list)  # previous versions, oldest first
    deleted: bool = False


@dataclass
class Ephemeral:
    channel: str
    user: str
    ts: str
    text: str | None
    blocks: list | None
    thread_ts: str | None = None


@dataclass
class View:
    id: str
    type: str
    view: dict
    hash: str
    external_id: str | None = None
    user_id: str | None = None
    trigger_id: str | None = None
    root_view_id: str | None = None
    previous_view_id: str | None = None
    history: list[dict] = field(default_factory=list)  # previous payloads, oldest first


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    title: str | None = None
    content: bytes | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False


@dataclass
class ResponseUrlPost:
    url: str
    payload: dict
    time: float
    status: int


class SlackError(Exception):
    """Raised by a method handler; answered as HTTP 200 ``{"ok": false, "error": error, **extra}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.body = {"ok": False, "error": error, **extra}


def require(args: dict, name: str, error: str = "missing_argument") -> Any:
    value = args.get(name)
    if value in (None, "", [], {}):
        raise SlackError(error, response_metadata={"messages": [f"[ERROR] missing required field: {name}"]})
    return value


def raise_if(errors: list[str], error: str = "invalid_blocks") -> None:
    if errors:
        raise SlackError(error, errors=errors, response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})


def truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def tz_offset(tz: str) -> int:
    offset = datetime.now(ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def parse_body(body: bytes, content_type: str, *, keep_bytes: bool = False) -> dict[str, Any]:
    """Decode a request body: JSON object, urlencoded form, or multipart form."""
    if not body:
        return {}
    ctype = content_type.split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            data = json.loads(body)
            if not isinstance(data, dict):
                raise SlackError("invalid_json")
            return data
        if ctype == "multipart/form-data":
            head = f"Content-Type: {content_type}\r\n\r\n".encode()
            message = BytesParser(policy=HTTP).parsebytes(head + body)
            form: dict[str, Any] = {}
            for part in message.iter_parts():  # type: ignore[attr-defined]
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                form[name] = payload if keep_bytes or part.get_filename() else payload.decode()
            return form
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError) as err:
        raise SlackError("invalid_form_data") from err


def decode_args(args: dict[str, Any]) -> dict[str, Any]:
    """Drop null values and decode JSON-encoded fields (form posts send blocks/view as strings)."""
    args = {k: v for k, v in args.items() if v is not None}
    for key in JSON_FIELDS:
        if isinstance(args.get(key), str) and args[key]:
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                raise SlackError("invalid_blocks_format" if key == "blocks" else "invalid_arguments") from None
    return args
