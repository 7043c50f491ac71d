"""The subset of Slack's Web API expbot calls, answered from the sandbox's state.

Found with `grep -rn "client\\.\\w*(" bot adapters`: chat.postMessage/update/postEphemeral/getPermalink,
views.open/update/publish, conversations.open, files.getUploadURLExternal + upload +
files.completeUploadExternal (files_upload_v2), usergroups.users.list, users.info; auth.test for
tools. Also the response_url that Bolt's respond() posts to. Answers are shaped as Slack's are.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from bot.sandbox.config import BOT_USER, PEOPLE, TEAM
from bot.sandbox.state import MAX_FILES, File, SandboxState

_JSON_ARGS = ("blocks", "attachments", "view", "files")


class ApiError(Exception):
    """A Web API error answer: {"ok": false, "error": ...}."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _need(args: dict, key: str, error: str | None = None) -> Any:
    if not args.get(key):
        raise ApiError(error or "missing_argument")
    return args[key]


class WebApi:
    """Slack's Web API methods over a SandboxState; `base` is where serve answers (http://host:port)."""

    def __init__(self, state: SandboxState, bot_token: str, base: str) -> None:
        self.state, self.bot_token, self.base = state, bot_token, base
        self.methods: dict[str, Callable[[dict], dict]] = {
            "auth.test": self.auth_test, "chat.postMessage": self.post_message, "chat.update": self.update,
            "chat.postEphemeral": self.post_ephemeral, "chat.getPermalink": self.permalink,
            "views.open": self.views_open, "views.push": self.views_open, "views.update": self.views_update,
            "views.publish": self.views_publish, "conversations.open": self.conversations_open,
            "users.info": self.users_info, "usergroups.users.list": self.usergroup_users,
            "files.getUploadURLExternal": self.upload_url, "files.completeUploadExternal": self.complete_upload,
        }

    def call(self, method: str, body: bytes, content_type: str, authorization: str) -> dict:
        """One Web API call: checks the bot token, decodes the arguments, answers as Slack does."""
        handler = self.methods.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        try:
            args = decode(body, content_type)
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        token = authorization.removeprefix("Bearer ").strip() or str(args.pop("token", ""))
        if token != self.bot_token:
            return {"ok": False, "error": "invalid_auth" if token else "not_authed"}
        try:
            with self.state.lock:
                return {"ok": True, **handler(args)}
        except ApiError as e:
            return {"ok": False, "error": e.error}

    # -- chat --------------------------------------------------------------------------------------
    def auth_test(self, args: dict) -> dict:
        """auth.test: who the bot is."""
        return {"url": f"{self.base}/sandbox", "team": "expbot sandbox", "user": "expbot", "team_id": TEAM,
                "user_id": BOT_USER, "bot_id": "B0EXPBOT"}

    def post_message(self, args: dict) -> dict:
        """chat.postMessage: a message, or a reply in a thread."""
        channel = _need(args, "channel", "channel_not_found")
        _content(args)
        thread_ts = args.get("thread_ts") or None
        if thread_ts and self.state.find(channel, thread_ts) is None:
            # As Slack does with a thread_ts that names no message (here: one gone past MAX_MESSAGES):
            # the reply is posted in the channel; no error, so nothing retries it forever.
            thread_ts = None
        msg = self.state.post(channel, BOT_USER, args.get("text") or "", args.get("blocks"), thread_ts=thread_ts)
        return {"channel": channel, "ts": msg.ts, "message": {"type": "message", "text": msg.text, "ts": msg.ts}}

    def update(self, args: dict) -> dict:
        """chat.update: edit a message the bot posted."""
        channel = _need(args, "channel", "channel_not_found")
        msg = self.state.find(channel, _need(args, "ts", "message_not_found"))
        if msg is None:
            raise ApiError("message_not_found")
        _content(args)
        self.state.edit(msg, args.get("text"), args.get("blocks"))
        return {"channel": channel, "ts": msg.ts, "text": msg.text}

    def post_ephemeral(self, args: dict) -> dict:
        """chat.postEphemeral: a message only `user` sees."""
        channel, user = _need(args, "channel", "channel_not_found"), _need(args, "user", "user_not_found")
        _content(args)
        msg = self.state.post(channel, BOT_USER, args.get("text") or "", args.get("blocks"),
                              thread_ts=args.get("thread_ts"), ephemeral_to=user)
        return {"message_ts": msg.ts}

    def permalink(self, args: dict) -> dict:
        """chat.getPermalink: a link to the message on the page."""
        channel, ts = _need(args, "channel", "channel_not_found"), _need(args, "message_ts", "message_not_found")
        if self.state.find(channel, ts) is None:
            raise ApiError("message_not_found")
        return {"channel": channel, "permalink": f"{self.base}/sandbox#{channel}/{ts}"}

    # -- views -------------------------------------------------------------------------------------
    def views_open(self, args: dict) -> dict:
        """views.open (and views.push): a modal, on a fresh trigger."""
        view = _view(args, "modal")
        user = self.state.take_trigger(_need(args, "trigger_id"))
        if user is None:
            raise ApiError("expired_trigger_id")
        return {"view": _view_json(self.state.open_view(user, view))}

    def views_update(self, args: dict) -> dict:
        """views.update: replace an open view."""
        view = _view(args, None)
        record = self.state.views.get(args.get("view_id") or "")
        if record is None:
            raise ApiError("not_found")
        if args.get("hash") and args["hash"] != record.hash:
            raise ApiError("hash_conflict")
        return {"view": _view_json(self.state.replace_view(record, view))}

    def views_publish(self, args: dict) -> dict:
        """views.publish: a user's App Home."""
        user, view = _need(args, "user_id", "user_not_found"), _view(args, "home")
        record = self.state.home(user)
        record = self.state.open_view(user, view) if record is None else self.state.replace_view(record, view)
        return {"view": _view_json(record)}

    # -- people, DMs, files ------------------------------------------------------------------------
    def conversations_open(self, args: dict) -> dict:
        """conversations.open: the bot's DM with one person."""
        users = [u for u in str(_need(args, "users", "users_list_not_supplied")).split(",") if u.strip()]
        if len(users) != 1:
            raise ApiError("not_supported")  # expbot opens DMs with one person only
        return {"channel": {"id": self.state.dm(users[0].strip())}}

    def users_info(self, args: dict) -> dict:
        """users.info: one of the page's people."""
        person = next((p for p in PEOPLE if p.id == args.get("user")), None)
        if person is None:
            raise ApiError("user_not_found")
        return {"user": {"id": person.id, "name": person.name, "real_name": person.name, "tz": "UTC",
                         "team_id": TEAM, "is_bot": False, "deleted": False}}

    def usergroup_users(self, args: dict) -> dict:
        """usergroups.users.list: the sandbox has no groups (its roles are by user id)."""
        raise ApiError("no_such_subteam")

    def upload_url(self, args: dict) -> dict:
        """files.getUploadURLExternal: where the file's bytes go."""
        record = File(self.state.new_id("F"), str(_need(args, "filename")))
        self.state.files[record.id] = record
        for old in list(self.state.files)[:-MAX_FILES]:  # oldest first: dicts keep their order
            del self.state.files[old]
        return {"upload_url": f"{self.base}/sandbox/upload/{record.id}", "file_id": record.id}

    def complete_upload(self, args: dict) -> dict:
        """files.completeUploadExternal: share the uploaded files in a channel or thread."""
        entries = _need(args, "files")
        records = [self.state.files.get(e.get("id", "")) if isinstance(e, dict) else None for e in entries]
        if any(r is None or r.content is None for r in records):
            raise ApiError("file_not_found")
        for record, entry in zip(records, entries):
            record.title = entry.get("title") or record.name  # type: ignore[union-attr]
        ids = [r.id for r in records]  # type: ignore[union-attr]
        channel = args.get("channel_id")
        if channel:
            self.state.post(channel, BOT_USER, args.get("initial_comment") or "", None,
                            thread_ts=args.get("thread_ts"), files=ids)
        self.state.save_later()  # the titles
        return {"files": [{"id": r.id, "name": r.name, "title": r.title} for r in records]}  # type: ignore[union-attr]

    def uploaded(self, file_id: str, content: bytes) -> bool:
        """The bytes POSTed to an upload URL; False for an unknown or completed upload."""
        with self.state.lock:
            record = self.state.files.get(file_id)
            if record is None or record.content is not None:
                return False
            record.content = content
        self.state.save_later()
        return True

    def respond(self, key: str, payload: dict) -> bool:
        """A POST to a response_url (Bolt's respond()): ephemeral, in channel, replace or delete the original."""
        with self.state.lock:
            target = self.state.response_urls.get(key)
            if target is None:
                return False
            original = self.state.find(target["channel"], target["ts"]) if target["ts"] else None
            if original is not None and _truthy(payload.get("delete_original")):
                original.deleted = True
                self.state.changed()
            elif original is not None and _truthy(payload.get("replace_original")):
                self.state.edit(original, payload.get("text"), payload.get("blocks"), replace=True)
            else:
                to = None if payload.get("response_type") == "in_channel" else target["user"]
                self.state.post(target["channel"], BOT_USER, payload.get("text") or "", payload.get("blocks"),
                                thread_ts=payload.get("thread_ts"), ephemeral_to=to)
            return True


def decode(body: bytes, content_type: str) -> dict[str, Any]:
    """A Web API request's arguments: JSON or a form, with JSON-encoded fields (blocks, view) decoded."""
    kind = content_type.split(";")[0].strip().lower()
    if not body:
        return {}
    args = json.loads(body) if kind == "application/json" else dict(parse_qsl(body.decode(), keep_blank_values=True))
    if not isinstance(args, dict):
        raise ValueError("expected an object")
    for key in _JSON_ARGS:
        if isinstance(args.get(key), str) and args[key]:
            args[key] = json.loads(args[key])
    return {k: v for k, v in args.items() if v is not None}


def _content(args: dict) -> None:
    if not (args.get("text") or args.get("blocks")):
        raise ApiError("no_text")
    if args.get("blocks") is not None and not isinstance(args["blocks"], list):
        raise ApiError("invalid_blocks")


def _view(args: dict, kind: str | None) -> dict:
    view = args.get("view")
    if not isinstance(view, dict) or (kind is not None and view.get("type") != kind):
        raise ApiError("invalid_arguments")
    return view


def _view_json(record: Any) -> dict:
    return {**record.view, "id": record.id, "team_id": TEAM, "hash": record.hash, "state": {"values": {}}}


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"
