"""What the sandbox Slack holds: messages, ephemerals, views, files, DMs.

Held in memory and saved to the data directory after each change (bot/sandbox/store.py), so a
restart of `expbot serve` keeps every experiment's parent message and thread. Every change bumps
`seq`, which the page polls to know when to redraw.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

# A page redrawn from all of it stays quick, and a serve left running for weeks stays small: past
# these, the oldest go (a local stand-in, not an archive).
MAX_MESSAGES = 2000
MAX_FILES = 100
MAX_VIEWS = 200  # closed modals past this go first; App Homes and open modals stay
MAX_RESPONSE_URLS = 500  # Slack's expire after 30 minutes; the newest are plenty


@dataclass
class Message:
    """A message in a channel or thread; `ephemeral_to` set: only that user sees it."""

    channel: str
    ts: str
    user: str
    text: str
    blocks: list[dict] | None
    thread_ts: str | None = None
    ephemeral_to: str | None = None
    files: list[str] = field(default_factory=list)
    edited: bool = False
    deleted: bool = False


@dataclass
class View:
    """A modal a user has open, or a user's App Home."""

    id: str
    user: str
    type: str
    view: dict
    hash: str
    errors: dict[str, str] = field(default_factory=dict)
    open: bool = True


@dataclass
class File:
    """An uploaded file: its bytes arrive at the upload URL, then completion shares it."""

    id: str
    name: str
    title: str = ""
    content: bytes | None = None


class SandboxState:
    """The sandbox's Slack workspace, in memory, safe to use from many request threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.seq = 0
        self.messages: list[Message] = []
        self.views: dict[str, View] = {}
        self.files: dict[str, File] = {}
        self.dms: dict[str, str] = {}  # user -> the bot's DM channel with them
        self.triggers: dict[str, tuple[str, float]] = {}  # trigger_id -> (user, issued)
        self.response_urls: dict[str, dict[str, Any]] = {}  # key -> channel, ts, user
        # Ids and message ts count on from what a restored state saved, so they never repeat.
        self.next_id = 1
        self.epoch = int(time.time())
        # The page redraws when seq differs from what it saw: a restart must not start where an
        # earlier serve's page already is.
        self.seq = time.time_ns() // 1_000_000
        self.on_change: Callable[[], None] | None = None  # the store's cue to save

    def changed(self) -> None:
        """Something the page shows changed."""
        self.seq += 1
        self.save_later()

    def save_later(self) -> None:
        """Something worth keeping across a restart changed."""
        if self.on_change is not None:
            self.on_change()

    def _next(self) -> int:
        with self.lock:
            n, self.next_id = self.next_id, self.next_id + 1
            return n

    def new_id(self, prefix: str) -> str:
        """A fresh Slack-shaped id (V..., F..., D...)."""
        return f"{prefix}{self._next():08d}"

    def post(self, channel: str, user: str, text: str, blocks: list[dict] | None, *, thread_ts: str | None = None,
             ephemeral_to: str | None = None, files: list[str] | None = None) -> Message:
        """Add a message; its ts orders it, as in Slack."""
        with self.lock:
            n = self._next()
            ts = f"{self.epoch + n // 1_000_000}.{n % 1_000_000:06d}"
            msg = Message(channel, ts, user, text, blocks, thread_ts or None, ephemeral_to, list(files or []))
            self.messages.append(msg)
            del self.messages[:-MAX_MESSAGES]
            self.changed()
            return msg

    def find(self, channel: str, ts: str) -> Message | None:
        """The message (not an ephemeral) at (channel, ts)."""
        with self.lock:
            return next((m for m in self.messages if m.channel == channel and m.ts == ts and not m.ephemeral_to
                         and not m.deleted), None)

    def edit(self, msg: Message, text: str | None, blocks: list[dict] | None, *, replace: bool = False) -> None:
        """chat.update keeps what it was not given; a response_url replace_original replaces all."""
        with self.lock:
            if replace or text is not None:
                msg.text = text or ""
            if replace or blocks is not None:
                msg.blocks = blocks
            msg.edited = True
            self.changed()

    def dm(self, user: str) -> str:
        """The bot's DM channel with `user`, opened on first use."""
        with self.lock:
            if user not in self.dms:
                self.dms[user] = f"D{user}"
                self.changed()
            return self.dms[user]

    def new_trigger(self, user: str) -> str:
        """A trigger_id as Slack sends with an interaction: opens one modal for that user."""
        trigger = f"{self._next()}.{self.epoch}.{secrets.token_hex(8)}"
        with self.lock:
            self.triggers[trigger] = (user, time.monotonic())
        return trigger

    def take_trigger(self, trigger: str, ttl: float = 10.0) -> str | None:
        """The user a trigger was issued for, once and in time; None otherwise."""
        # Slack allows 3 s; the sandbox shares a possibly busy machine with the bot, so it is lenient.
        with self.lock:
            user, issued = self.triggers.pop(trigger, (None, 0.0))
        return user if user is not None and time.monotonic() - issued <= ttl else None

    def new_response_url_key(self, channel: str, user: str, ts: str | None = None) -> str:
        """A response_url's key: where its replies go, and which message replace_original edits."""
        key = secrets.token_hex(12)
        with self.lock:
            self.response_urls[key] = {"channel": channel, "ts": ts, "user": user}
            for old in list(self.response_urls)[:-MAX_RESPONSE_URLS]:  # oldest first: dicts keep their order
                del self.response_urls[old]
        self.save_later()
        return key

    def open_view(self, user: str, view: dict) -> View:
        """A new modal (or App Home) for `user`."""
        with self.lock:
            record = View(self.new_id("V"), user, str(view.get("type")), view, secrets.token_hex(6))
            self.views[record.id] = record
            closed = [v.id for v in self.views.values() if v.type == "modal" and not v.open]
            for old in closed[:max(0, len(self.views) - MAX_VIEWS)]:
                del self.views[old]
            self.changed()
            return record

    def replace_view(self, record: View, view: dict) -> View:
        """views.update / publish: the new content, errors cleared."""
        with self.lock:
            record.view, record.type, record.hash, record.errors = view, str(view.get("type")), secrets.token_hex(6), {}
            self.changed()
            return record

    def home(self, user: str) -> View | None:
        """The user's App Home, once published."""
        with self.lock:
            return next((v for v in self.views.values() if v.type == "home" and v.user == user), None)

    def open_modal(self, user: str) -> View | None:
        """The newest modal `user` has open."""
        with self.lock:
            return next((v for v in reversed(list(self.views.values()))
                         if v.type == "modal" and v.user == user and v.open), None)

    def close(self, record: View) -> None:
        """The modal is gone (submitted, cancelled or cleared)."""
        with self.lock:
            record.open = False
            self.changed()
