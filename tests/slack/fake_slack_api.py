"""A local Slack Web API test server: real HTTP on 127.0.0.1, port 0, in a daemon thread.

    server = FakeSlackApi().start()
    client = WebClient(token=server.bot_token, base_url=server.base_url)
    ...
    server.stop()

It checks tokens, required arguments and Block Kit limits (``block_limits``), trigger_id lifetime
and single use, response_url use limits; injects 429/5xx on demand; records every call.
Methods live in ``fake_slack_methods``; records and request decoding in ``fake_slack_records``.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from tests.slack import block_limits as limits
from tests.slack.fake_slack_methods import SlackWebMethods
from tests.slack.fake_slack_records import (
    Call,
    Ephemeral,
    Message,
    ResponseUrlPost,
    SlackError,
    UploadedFile,
    View,
    decode_args,
    parse_body,
    raise_if,
    truthy,
    tz_offset,
)

__all__ = ["FakeSlackApi", "Call", "Message", "Ephemeral", "View", "UploadedFile", "ResponseUrlPost",
           "UPLOAD", "RESPONSE_URL"]

UPLOAD = "upload"  # pseudo-method: POSTs to the upload_url from files.getUploadURLExternal
RESPONSE_URL = "response_url"  # pseudo-method: POSTs to a URL from new_response_url()

Reply = tuple[int, Any, dict[str, str]]  # HTTP status, JSON-able dict or raw bytes, extra headers


class FakeSlackApi(SlackWebMethods):
    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-bot-token",
        clock: Callable[[], float] = time.monotonic,
        trigger_ttl: float = 3.0,
        response_url_max_uses: int = 5,
        response_url_ttl: float = 30 * 60,
        team_id: str = "T000FAKE",
        bot_user_id: str = "UBOT0001",
        bot_id: str = "BBOT0001",
        strict_users: bool = False,
    ) -> None:
        self.bot_token, self.clock, self.trigger_ttl = bot_token, clock, trigger_ttl
        self.response_url_max_uses, self.response_url_ttl = response_url_max_uses, response_url_ttl
        self.team_id, self.bot_user_id, self.bot_id = team_id, bot_user_id, bot_id
        self.strict_users = strict_users  # unknown users -> user_not_found in DMs/ephemerals/home
        self.tokens: dict[str, str] = {bot_token: bot_user_id}  # token -> user id
        self.users: dict[str, dict] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.refused_channels: dict[str, str] = {}  # channel -> error chat.postMessage answers there
        self.views: dict[str, View] = {}
        self.files: dict[str, UploadedFile] = {}
        self._calls: list[Call] = []
        self._messages: list[Message] = []
        self._ephemerals: list[Ephemeral] = []
        self._responses: list[ResponseUrlPost] = []
        self._triggers: dict[str, dict] = {}
        self._response_urls: dict[str, dict] = {}
        self._dms: dict[frozenset, str] = {}
        self._faults: dict[str, list[Reply]] = {}
        self._ids = itertools.count(1)
        self._epoch = int(time.time())
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._methods = self.method_table()
        self.add_user(bot_user_id, "expbot", is_bot=True)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeSlackApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                fake._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._serve(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-slack-api",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlackApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeSlackApi is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def base_url(self) -> str:
        """For ``WebClient(base_url=...)``: ends in ``/api/``."""
        return self.root_url + "api/"

    # -- configuration ----------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, tz: str = "UTC", *, is_bot: bool = False, **profile: Any) -> dict:
        real_name = profile.pop("real_name", name)
        user = {"id": user_id, "team_id": self.team_id, "name": name, "real_name": real_name, "tz": tz,
                "tz_offset": tz_offset(tz), "is_bot": is_bot, "deleted": False,
                "profile": {"display_name": name, "real_name": real_name, **profile}}
        with self._lock:
            self.users[user_id] = user
        return user

    def refuse_channel(self, channel: str, error: str = "not_in_channel") -> None:
        """Make chat.postMessage into `channel` fail as it does when the bot is not a member."""
        with self._lock:
            self.refused_channels[channel] = error

    def add_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        with self._lock:
            self.usergroups[usergroup_id] = list(user_ids)

    def add_token(self, token: str, user_id: str) -> None:
        """Accept another token (e.g. a user token) as ``user_id``."""
        with self._lock:
            self.tokens[token] = user_id

    def new_trigger_id(self) -> str:
        """A trigger_id usable once by views.open/views.push within ``trigger_ttl`` seconds."""
        trigger_id = f"{next(self._ids)}.{self._epoch}.{secrets.token_hex(16)}"
        with self._lock:
            self._triggers[trigger_id] = {"issued": self.clock(), "used": False}
        return trigger_id

    def new_response_url(self, channel: str | None = None, message_ts: str | None = None) -> str:
        """A response_url good for ``response_url_max_uses`` posts within ``response_url_ttl``.

        With ``channel`` an in_channel response is posted there; with ``message_ts`` too,
        replace_original / delete_original act on that message."""
        key = secrets.token_hex(12)
        with self._lock:
            self._response_urls[key] = {"issued": self.clock(), "uses": 0, "channel": channel, "ts": message_ts}
        return f"{self.root_url}response/{key}"

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer HTTP 429 with ``Retry-After: retry_after``."""
        fault: Reply = (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
        with self._lock:
            self._faults.setdefault(method, []).extend([fault] * times)

    def fail(self, method: str, times: int = 1, status: int = 503) -> None:
        """The next ``times`` calls of ``method`` answer HTTP ``status``."""
        fault: Reply = (status, {"ok": False, "error": "fatal_error"}, {})
        with self._lock:
            self._faults.setdefault(method, []).extend([fault] * times)

    # -- inspection -------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[Message]:
        """Posted messages (oldest first); chat.update edits them in place, keeping ``edits``."""
        with self._lock:
            return [m for m in self._messages if (channel is None or m.channel == channel)
                    and (thread_ts is None or m.thread_ts == thread_ts)]

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Ephemeral]:
        with self._lock:
            return [e for e in self._ephemerals
                    if (channel is None or e.channel == channel) and (user is None or e.user == user)]

    def responses(self, url: str | None = None) -> list[ResponseUrlPost]:
        with self._lock:
            return [r for r in self._responses if url is None or r.url == url]

    def uploaded_files(self) -> list[UploadedFile]:
        with self._lock:
            return [f for f in self.files.values() if f.completed]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
        """Poll ``predicate()`` until truthy and return its value; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s; calls: {[c.method for c in self.calls]}")
            time.sleep(interval)

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        return self.wait_for(lambda: len(found := self.calls_to(method)) >= count and found, timeout)

    # -- HTTP plumbing ----------------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler, verb: str) -> None:
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        ctype = request.headers.get("Content-Type", "")
        parts = url.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "api":
            reply = self._serve_api(parts[1], url.query, body, ctype, request.headers.get("Authorization"), verb)
        elif len(parts) == 3 and parts[:2] == ["upload", "v1"]:
            reply = self._serve_upload(parts[2], body, ctype, verb)
        elif len(parts) == 2 and parts[0] == "response":
            reply = self._serve_response_url(parts[1], body, ctype, verb)
        else:
            reply = (404, {"ok": False, "error": "not_found"}, {})
        status, payload, headers = reply
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request.send_response(status)
        ctype = "text/plain; charset=utf-8" if isinstance(payload, bytes) else "application/json; charset=utf-8"
        request.send_header("Content-Type", ctype)
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _serve_api(self, method: str, query: str, body: bytes, ctype: str, auth: str | None, verb: str) -> Reply:
        args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        token = None
        with self._lock:
            try:
                args = decode_args({**args, **parse_body(body, ctype)})
                bearer = auth[len("Bearer "):].strip() if auth and auth.startswith("Bearer ") else None
                token = bearer or args.get("token") or None
                args.pop("token", None)
                reply = self._dispatch(method, args, token)
            except SlackError as err:
                reply = (200, err.body, {})
            self._record(method, args, token, reply, verb)
        return reply

    def _dispatch(self, method: str, args: dict, token: str | None) -> Reply:
        fault = self._take_fault(method)
        if fault is not None:
            return fault
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        user_id = self.tokens.get(token)
        if user_id is None:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        return 200, {"ok": True, **handler(args, user_id)}, {}

    def _take_fault(self, method: str) -> Reply | None:
        queue = self._faults.get(method)
        return queue.pop(0) if queue else None

    def _record(self, method: str, args: dict, token: str | None, reply: Reply, verb: str) -> None:
        status, payload, _ = reply
        response = payload if isinstance(payload, dict) else {"body": payload.decode()}
        self._calls.append(Call(method, args, token, self.clock(), status, response, verb))

    def _serve_upload(self, file_id: str, body: bytes, ctype: str, verb: str) -> Reply:
        content = body
        if ctype.startswith("multipart/form-data"):
            content = parse_body(body, ctype, keep_bytes=True).get("file", body)
        with self._lock:
            reply = self._take_fault(UPLOAD)
            upload = self.files.get(file_id)
            if reply is not None:
                pass
            elif upload is None or upload.completed:
                reply = (404, b"file_not_found", {})
            else:
                upload.content = content
                reply = (200, f"OK - {len(content)}".encode(), {})
            self._record(UPLOAD, {"file_id": file_id, "content": content}, None, reply, verb)
        return reply

    def _serve_response_url(self, key: str, body: bytes, ctype: str, verb: str) -> Reply:
        url = f"{self.root_url}response/{key}"
        payload: dict = {}
        with self._lock:
            reply = self._take_fault(RESPONSE_URL)
            if reply is None:
                try:
                    payload = decode_args(parse_body(body, ctype or "application/json"))
                    reply = self._use_response_url(key, payload)
                except SlackError as err:
                    reply = (400, err.error.encode(), {})
            self._responses.append(ResponseUrlPost(url, payload, self.clock(), reply[0]))
            self._record(RESPONSE_URL, {"url": url, **payload}, None, reply, verb)
        return reply

    def _use_response_url(self, key: str, payload: dict) -> Reply:
        entry = self._response_urls.get(key)
        if entry is None:
            return 404, b"invalid_url", {}
        if self.clock() - entry["issued"] > self.response_url_ttl:
            return 404, b"expired_url", {}
        if entry["uses"] >= self.response_url_max_uses:
            return 404, b"used_url", {}
        if not truthy(payload.get("delete_original")):
            if not any(payload.get(k) for k in ("text", "blocks", "attachments")):
                return 400, b"no_text", {}
            if payload.get("blocks") is not None:
                raise_if(limits.validate_blocks(payload["blocks"]))
        entry["uses"] += 1
        original = self.message(entry["channel"], entry["ts"]) if entry["ts"] else None
        if original is not None and truthy(payload.get("delete_original")):
            original.deleted = True
        elif original is not None and truthy(payload.get("replace_original")):
            self._edit(original, payload, replace=True)
        elif payload.get("response_type") == "in_channel" and entry["channel"]:
            self._post(entry["channel"], payload, self.bot_user_id)
        return 200, {"ok": True}, {}
