"""The Web API methods the fake Slack server implements (a mixin of ``FakeSlackApi``).

Each handler takes the decoded args and the caller's user id, returns the response body without
``ok`` (added by the dispatcher), or raises ``SlackError``. Handlers run under the server's lock.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from typing import Any, Callable

from tests.slack import block_limits as limits
from tests.slack.fake_slack_records import (
    Ephemeral,
    Message,
    SlackError,
    UploadedFile,
    View,
    raise_if,
    require,
)


class SlackWebMethods:
    # state owned by FakeSlackApi.__init__
    clock: Callable[[], float]
    trigger_ttl: float
    team_id: str
    bot_user_id: str
    bot_id: str
    strict_users: bool
    users: dict[str, dict]
    usergroups: dict[str, list[str]]
    views: dict[str, View]
    files: dict[str, UploadedFile]
    _lock: threading.RLock
    _messages: list[Message]
    _ephemerals: list[Ephemeral]
    _triggers: dict[str, dict]
    _dms: dict[frozenset, str]
    _ids: itertools.count
    _epoch: int

    @property
    def root_url(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def method_table(self) -> dict[str, Callable[[dict, str], dict]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.push": self._views_open,  # same rules: a fresh trigger_id and a modal
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    def message(self, channel: str | None, ts: str | None) -> Message | None:
        with self._lock:
            return next((m for m in self._messages if m.channel == channel and m.ts == ts), None)

    # -- state helpers ------------------------------------------------------------------------------

    def _new_ts(self) -> str:
        n = next(self._ids)
        return f"{self._epoch + n // 1_000_000}.{n % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def _post(self, channel: str, args: dict, user: str, files: list | None = None) -> Message:
        msg = Message(channel, self._new_ts(), args.get("text"), args.get("blocks"), args.get("attachments"),
                      args.get("thread_ts") or None, user, files or [])
        self._messages.append(msg)
        return msg

    def _edit(self, msg: Message, args: dict, *, replace: bool = False) -> None:
        """chat.update keeps fields it was not given; a response_url replace_original replaces all."""
        msg.edits.append({"text": msg.text, "blocks": msg.blocks, "attachments": msg.attachments,
                          "edited_at": self.clock()})
        for key in ("text", "blocks", "attachments"):
            if replace or key in args:
                setattr(msg, key, args.get(key))

    def _message_json(self, msg: Message) -> dict:
        out: dict[str, Any] = {"type": "message", "user": msg.user, "bot_id": self.bot_id, "text": msg.text or "",
                               "ts": msg.ts, "team": self.team_id}
        for key in ("blocks", "attachments", "thread_ts", "files"):
            if getattr(msg, key):
                out[key] = getattr(msg, key)
        return out

    def _check_message_content(self, args: dict) -> None:
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            raise SlackError("no_text")
        if len(args.get("text") or "") > limits.MAX_MESSAGE_TEXT:
            raise SlackError("msg_too_long")
        if args.get("blocks") is not None:
            raise_if(limits.validate_blocks(args["blocks"]))
        if args.get("attachments") is not None:
            raise_if(limits.validate_attachments(args["attachments"]), "invalid_attachments")

    def _check_user(self, user_id: str) -> None:
        if self.strict_users and user_id not in self.users:
            raise SlackError("user_not_found")

    def _use_trigger(self, trigger_id: str) -> None:
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger["used"]:
            raise SlackError("exchanged_trigger_id")
        if self.clock() - trigger["issued"] > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        trigger["used"] = True

    def _valid_view(self, view: Any, allowed_type: str | None) -> dict:
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] view must be an object"]})
        raise_if(limits.validate_view(view))
        if allowed_type is not None and view.get("type") != allowed_type:
            raise SlackError("invalid_arguments", response_metadata={
                "messages": [f"[ERROR] view type must be {allowed_type} [json-pointer:/view/type]"]})
        return view

    def _store_view(self, view: dict, **fields: Any) -> dict:
        external_id = view.get("external_id") or None
        if external_id and any(v.external_id == external_id for v in self.views.values()):
            raise SlackError("duplicate_external_id")
        record = View(self._new_id("V"), view["type"], view, secrets.token_hex(6), external_id, **fields)
        record.root_view_id = record.root_view_id or record.id
        self.views[record.id] = record
        return {"view": self._view_json(record)}

    def _replace_view(self, record: View, view: dict, args: dict) -> dict:
        if args.get("hash") and args["hash"] != record.hash:
            raise SlackError("hash_conflict")
        record.history.append(record.view)
        record.view, record.type, record.hash = view, view["type"], secrets.token_hex(6)
        return {"view": self._view_json(record)}

    def _view_json(self, record: View) -> dict:
        return {**record.view, "id": record.id, "team_id": self.team_id, "hash": record.hash,
                "root_view_id": record.root_view_id, "previous_view_id": record.previous_view_id,
                "bot_id": self.bot_id, "state": {"values": {}}}

    # -- Web API methods ----------------------------------------------------------------------------

    def _auth_test(self, args: dict, user_id: str) -> dict:
        name = self.users[user_id]["name"] if user_id in self.users else user_id
        return {"url": "https://fake.slack.com/", "team": "Fake Team", "user": name, "team_id": self.team_id,
                "user_id": user_id, "bot_id": self.bot_id if user_id == self.bot_user_id else None,
                "is_enterprise_install": False}

    def _chat_post_message(self, args: dict, user_id: str) -> dict:
        channel = require(args, "channel", "channel_not_found")
        if channel in self.refused_channels:
            raise SlackError(self.refused_channels[channel])
        self._check_message_content(args)
        msg = self._post(channel, args, user_id)
        return {"channel": channel, "ts": msg.ts, "message": self._message_json(msg)}

    def _chat_update(self, args: dict, user_id: str) -> dict:
        channel = require(args, "channel", "channel_not_found")
        msg = self.message(channel, require(args, "ts", "message_not_found"))
        if msg is None or msg.deleted:
            raise SlackError("message_not_found")
        if msg.user != user_id:
            raise SlackError("cant_update_message")
        self._check_message_content(args)
        self._edit(msg, args)
        return {"channel": channel, "ts": msg.ts, "text": msg.text or "", "message": self._message_json(msg)}

    def _chat_post_ephemeral(self, args: dict, user_id: str) -> dict:
        channel = require(args, "channel", "channel_not_found")
        user = require(args, "user", "user_not_found")
        self._check_user(user)
        self._check_message_content(args)
        ephemeral = Ephemeral(channel, user, self._new_ts(), args.get("text"), args.get("blocks"),
                              args.get("thread_ts") or None)
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.ts}

    def _chat_get_permalink(self, args: dict, user_id: str) -> dict:
        channel = require(args, "channel", "channel_not_found")
        ts = require(args, "message_ts", "message_not_found")
        if self.message(channel, ts) is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "permalink": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def _views_open(self, args: dict, user_id: str) -> dict:
        trigger_id = require(args, "trigger_id")
        view = self._valid_view(require(args, "view"), "modal")
        self._use_trigger(trigger_id)
        return self._store_view(view, trigger_id=trigger_id)

    def _views_update(self, args: dict, user_id: str) -> dict:
        view = self._valid_view(require(args, "view"), None)
        if args.get("view_id"):
            record = self.views.get(args["view_id"])
        elif args.get("external_id"):
            record = next((v for v in self.views.values() if v.external_id == args["external_id"]), None)
        else:
            raise SlackError("missing_argument", response_metadata={"messages": ["[ERROR] view_id or external_id"]})
        if record is None:
            raise SlackError("not_found")
        return self._replace_view(record, view, args)

    def _views_publish(self, args: dict, user_id: str) -> dict:
        user = require(args, "user_id", "user_not_found")
        self._check_user(user)
        view = self._valid_view(require(args, "view"), "home")
        record = next((v for v in self.views.values() if v.type == "home" and v.user_id == user), None)
        if record is None:
            return self._store_view(view, user_id=user)
        return self._replace_view(record, view, args)

    def _conversations_open(self, args: dict, user_id: str) -> dict:
        if args.get("channel"):
            return {"channel": {"id": args["channel"]}, "no_op": True, "already_open": True}
        users = [u.strip() for u in str(require(args, "users", "users_list_not_supplied")).split(",") if u.strip()]
        for user in users:
            self._check_user(user)
        key = frozenset(users)
        already_open = key in self._dms
        if not already_open:
            self._dms[key] = self._new_id("D" if len(users) == 1 else "G")
        return {"channel": {"id": self._dms[key]}, "no_op": already_open, "already_open": already_open}

    def _users_info(self, args: dict, user_id: str) -> dict:
        user = self.users.get(require(args, "user", "user_not_found"))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def _usergroups_users_list(self, args: dict, user_id: str) -> dict:
        group = require(args, "usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _files_get_upload_url(self, args: dict, user_id: str) -> dict:
        filename = require(args, "filename")
        try:
            length = int(require(args, "length"))
        except ValueError:
            raise SlackError("invalid_arguments") from None
        upload = UploadedFile(self._new_id("F"), filename, length)
        self.files[upload.id] = upload
        return {"upload_url": f"{self.root_url}upload/v1/{upload.id}", "file_id": upload.id}

    def _files_complete_upload(self, args: dict, user_id: str) -> dict:
        entries = require(args, "files")
        if not isinstance(entries, list):
            raise SlackError("invalid_arguments")
        uploads = []
        for entry in entries:
            upload = self.files.get(entry.get("id", "")) if isinstance(entry, dict) else None
            if upload is None or upload.content is None or upload.completed:
                raise SlackError("file_not_found")
            uploads.append((upload, entry.get("title") or upload.filename))
        channel, thread_ts = args.get("channel_id") or None, args.get("thread_ts") or None
        if thread_ts and not channel:
            raise SlackError("invalid_arguments",
                             response_metadata={"messages": ["[ERROR] thread_ts needs channel_id"]})
        out = []
        for upload, title in uploads:
            upload.title, upload.completed, upload.channel_id, upload.thread_ts = title, True, channel, thread_ts
            upload.initial_comment = args.get("initial_comment")
            out.append({"id": upload.id, "name": upload.filename, "title": title, "size": len(upload.content or b""),
                        "user": user_id, "channels": [channel] if channel else []})
        if channel:
            self._post(channel, {"text": args.get("initial_comment") or "", "thread_ts": thread_ts}, user_id, out)
        return {"files": out}
