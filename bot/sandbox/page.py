"""The sandbox's HTTP side: the page and its assets, its state as JSON, people's actions, the Web API.

Everything is under /sandbox; any other path goes to the app it wraps (expbot's Slack endpoint).
Clients not on this machine are refused unless they bring the sandbox token (EXPBOT_SANDBOX_TOKEN).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.blockkit import message_html, view_html
from bot.sandbox.config import BOT_USER, CHANNELS, PEOPLE
from bot.sandbox.delivery import Deliverer, DeliveryError
from bot.sandbox.guard import admit, may_act
from bot.sandbox.state import SandboxState
from bot.sandbox.webapi import WebApi

log = logging.getLogger(__name__)
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_STATIC = {"sandbox.css": "text/css", "sandbox.js": "application/javascript"}
_MAX_BODY = 20 * 1024 * 1024  # a chart or a log file; nothing expbot uploads is bigger


def _name(user: str) -> str:
    return "expbot" if user == BOT_USER else next((p.name for p in PEOPLE if p.id == user), user)


class SandboxApp:
    """The WSGI app for /sandbox/*, in front of `inner` (the Slack endpoint) for everything else."""

    def __init__(self, state: SandboxState, api: WebApi, deliver: Deliverer, inner: Wsgi, token: str | None) -> None:
        self.state, self.api, self.deliver, self.inner, self.token = state, api, deliver, inner, token

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path != "/sandbox" and not path.startswith("/sandbox/"):
            return self.inner(environ, start)
        parts = path.strip("/").split("/")
        body = _body(environ)
        # The Web API, uploads and response URLs are expbot's own calls: the bot token or the
        # unguessable key in the URL guards them, as in Slack.
        if len(parts) == 3 and parts[1] == "api":
            answer = self.api.call(parts[2], body, environ.get("CONTENT_TYPE", ""), environ.get("HTTP_AUTHORIZATION", ""))
            return _json(start, answer)
        if len(parts) == 3 and parts[1] == "upload":
            ok = self.api.uploaded(parts[2], body)
            return _send(start, "200 OK" if ok else "404 Not Found", "text/plain", b"OK" if ok else b"file_not_found")
        if len(parts) == 3 and parts[1] == "respond":
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return _send(start, "400 Bad Request", "text/plain", b"invalid_payload")
            ok = isinstance(payload, dict) and self.api.respond(parts[2], payload)
            return _send(start, "200 OK" if ok else "404 Not Found", "text/plain", b"ok" if ok else b"invalid_url")
        cookie = admit(environ, self.token)
        if cookie is False:
            return _send(start, "403 Forbidden", "text/plain",
                         b"the expbot sandbox answers this machine only, or whoever brings ?token=EXPBOT_SANDBOX_TOKEN\n")
        return self._page(parts, environ, body, start, cookie)

    def _page(self, parts: list[str], environ: dict[str, Any], body: bytes, start: Callable[..., Any],
              cookie: str | None) -> Iterable[bytes]:
        extra = [("Set-Cookie", cookie)] if cookie else []
        if parts == ["sandbox"]:
            return _send(start, "200 OK", "text/html; charset=utf-8", _asset("index.html"), extra)
        if len(parts) == 3 and parts[1] == "static" and parts[2] in _STATIC:
            return _send(start, "200 OK", f"{_STATIC[parts[2]]}; charset=utf-8", _asset(parts[2]))
        if parts == ["sandbox", "state"]:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            seq = query.get("seq", ["-1"])[0]
            return _json(start, self.snapshot(query.get("user", [""])[0], int(seq) if seq.lstrip("-").isdigit() else -1))
        if parts == ["sandbox", "do"] and environ.get("REQUEST_METHOD") == "POST":
            if not may_act(environ):
                return _send(start, "403 Forbidden", "text/plain", b"actions come from the sandbox page itself\n")
            return _json(start, self.act(body))
        if len(parts) == 3 and parts[1] == "files":
            record = self.state.files.get(parts[2])
            if record is not None and record.content is not None:
                kind = "image/png" if record.name.lower().endswith(".png") else "text/plain; charset=utf-8"
                return _send(start, "200 OK", kind, record.content)
        return _send(start, "404 Not Found", "text/plain", b"not found")

    def snapshot(self, user: str, seen: int) -> dict[str, Any]:
        """What `user` sees, drawn as HTML; just the sequence number when nothing changed since `seen`."""
        with self.state.lock:
            if seen == self.state.seq:
                return {"seq": seen}
            messages = [m for m in self.state.messages if not m.deleted and m.ephemeral_to in (None, user)]
            replies: dict[tuple[str, str], int] = {}
            for m in messages:
                if m.thread_ts and not m.ephemeral_to:
                    replies[(m.channel, m.thread_ts)] = replies.get((m.channel, m.thread_ts), 0) + 1
            drawn = [{
                "channel": m.channel, "ts": m.ts, "thread_ts": m.thread_ts, "user": _name(m.user),
                "bot": m.user == BOT_USER, "ephemeral": bool(m.ephemeral_to), "edited": m.edited,
                "replies": replies.get((m.channel, m.ts), 0), "html": message_html(m.text, m.blocks, _name),
                "files": [self._file(f) for f in m.files],
            } for m in messages]
            modal, home = self.state.open_modal(user), self.state.home(user)
            dm = self.state.dms.get(user)
            return {
                "seq": self.state.seq, "messages": drawn,
                "people": [{"id": p.id, "name": p.name, "role": p.role} for p in PEOPLE],
                "channels": [{"id": c, "name": n} for c, n in CHANNELS.items()], "dm": dm,
                "modal": {"id": modal.id, "hash": modal.hash, "html": view_html(modal.view, _name, modal.errors)}
                if modal else None,
                "home": {"id": home.id, "html": view_html(home.view, _name)} if home else None,
            }

    def _file(self, file_id: str) -> dict[str, Any]:
        record = self.state.files.get(file_id)
        name = record.name if record else file_id
        return {"url": f"/sandbox/files/{file_id}", "title": (record.title if record else "") or name,
                "image": name.lower().endswith(".png")}

    def act(self, body: bytes) -> dict[str, Any]:
        """One action from the page: a slash command, a button, a modal submitted or closed, Home opened."""
        try:
            act = json.loads(body)
            user, kind = str(act["user"]), str(act["kind"])
            if user not in {p.id for p in PEOPLE}:
                return {"ok": False, "error": f"unknown user {user}"}
            if kind == "command":
                text = str(act["text"]).strip()
                if not text.startswith("/experiment"):
                    return {"ok": False, "error": "expbot's command is /experiment (try /experiment help)"}
                self.deliver.slash(user, str(act["channel"]), text.removeprefix("/experiment").strip())
            elif kind == "press":
                self.deliver.press(user, dict(act["action"]), dict(act.get("where") or {}))
            elif kind == "submit":
                self.deliver.submit(user, str(act["view_id"]), dict(act["values"]))
            elif kind == "close":
                view = self.state.views.get(str(act["view_id"]))
                if view is not None and view.user == user:
                    self.state.close(view)
            elif kind == "home":
                self.deliver.home_opened(user)
            else:
                return {"ok": False, "error": f"unknown action {kind}"}
        except (ValueError, KeyError, TypeError) as e:
            return {"ok": False, "error": f"a malformed action: {e}"}
        except DeliveryError as e:
            log.warning("sandbox: %s", e)
            return {"ok": False, "error": str(e)}
        return {"ok": True}


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return b""
    return environ["wsgi.input"].read(min(length, _MAX_BODY)) if length > 0 else b""


def _asset(name: str) -> bytes:
    return resources.files("bot.sandbox").joinpath("static", name).read_bytes()


def _json(start: Callable[..., Any], value: Any) -> Iterable[bytes]:
    return _send(start, "200 OK", "application/json; charset=utf-8", json.dumps(value).encode())


def _send(start: Callable[..., Any], status: str, kind: str, data: bytes,
          extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    start(status, [("Content-Type", kind), ("Content-Length", str(len(data))), ("Cache-Control", "no-store"),
                   *(extra or [])])
    return [data]
