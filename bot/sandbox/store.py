"""The sandbox's page kept across restarts of `expbot serve`, in the data directory.

`sandbox-state.json` holds the messages, views, DMs and response URLs; `sandbox-files/` holds the
uploaded files' bytes, one file each. One thread (`sandbox-save`) writes them shortly after each
change, replacing the JSON atomically, and once more at exit; both stay within the state's caps.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from bot.sandbox.state import MAX_FILES, MAX_MESSAGES, MAX_RESPONSE_URLS, File, Message, SandboxState, View

log = logging.getLogger("expbot.sandbox")
STATE_FILE, FILES_DIR = "sandbox-state.json", "sandbox-files"
_VERSION = 1
_COALESCE_S = 0.1  # a launch posts and edits several messages at once: written once, not each
_FILE_ID = re.compile(r"F\d{8}")


class SandboxStore:
    """Loads a SandboxState from `data_dir` and, once started, saves it there after each change."""

    def __init__(self, state: SandboxState, data_dir: Path) -> None:
        self.state, self.path, self.files_dir = state, data_dir / STATE_FILE, data_dir / FILES_DIR
        self._wake, self._stop, self._saving = threading.Event(), threading.Event(), threading.Lock()
        self._on_disk: set[str] = set()  # file ids whose bytes are written (they never change)
        self._failing: str | None = None
        self._thread: threading.Thread | None = None

    def load(self) -> None:
        """What an earlier serve saved, if anything; an unreadable save is set aside and the page starts empty."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
            restore(self.state, record, self.files_dir)
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("cannot read the Slack sandbox's saved messages %s (%s): starting empty", self.path,
                        e.strerror or e)
            return
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            aside = self.path.with_name(self.path.name + ".bad")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.warning("the Slack sandbox's saved messages %s are unreadable (%s): starting empty; the file is "
                        "kept as %s", self.path, e, aside.name)
            return
        self._on_disk = {f.id for f in self.state.files.values() if f.content is not None}

    def start(self) -> None:
        """Save after every change from now on, and at exit."""
        self.state.on_change = self._wake.set
        self._thread = threading.Thread(target=self._run, name="sandbox-save", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def close(self) -> None:
        """Stop saving after one last save (serve's exit)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.save()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._stop.wait(_COALESCE_S)
            self._wake.clear()
            self.save()

    def save(self) -> None:
        """Write the state now: new files' bytes, then the JSON (replaced atomically), then drop evicted files."""
        with self._saving:
            with self.state.lock:
                text = json.dumps(dump(self.state), default=vars, separators=(",", ":"))
                new = {f.id: f.content for f in self.state.files.values()
                       if f.content is not None and f.id not in self._on_disk}
                keep = set(self.state.files)
            try:
                self.files_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                for file_id, content in new.items():  # before the JSON that names them
                    _replace(self.files_dir / file_id, content)
                    self._on_disk.add(file_id)
                _replace(self.path, text.encode())
                for path in self.files_dir.iterdir():
                    if _FILE_ID.fullmatch(path.name) and path.name not in keep:
                        path.unlink(missing_ok=True)
                self._on_disk &= keep
            except OSError as e:
                self._failed(f"{e.strerror or e}")
                return
            if self._failing is not None:
                log.info("the Slack sandbox saves its messages in %s again", self.path.parent)
                self._failing = None

    def _failed(self, reason: str) -> None:
        # One line per new reason, not one per change: a full disk must not flood serve's log.
        if reason != self._failing:
            log.warning("cannot save the Slack sandbox's messages in %s (%s): they are kept in memory and saved at "
                        "the next change; a restart of serve now would lose them", self.path.parent, reason)
        self._failing = reason


def dump(state: SandboxState) -> dict[str, Any]:
    """What is saved (the caller holds the state's lock); Message and View objects are written by `vars`."""
    return {
        "version": _VERSION, "epoch": state.epoch, "next_id": state.next_id, "messages": state.messages,
        "views": list(state.views.values()), "dms": state.dms, "response_urls": state.response_urls,
        "files": [{"id": f.id, "name": f.name, "title": f.title, "uploaded": f.content is not None}
                  for f in state.files.values()],
    }


def restore(state: SandboxState, record: Any, files_dir: Path) -> None:
    """Fill `state` from a saved record, all or nothing; ValueError/TypeError/KeyError when it is not one."""
    if not isinstance(record, dict) or record.get("version") != _VERSION:
        raise ValueError(f"not a version {_VERSION} sandbox save")
    messages = [Message(**m) for m in record["messages"]][-MAX_MESSAGES:]
    views = {v.id: v for v in (View(**v) for v in record["views"])}
    files = {}
    for f in record["files"][-MAX_FILES:]:
        content = None
        if f["uploaded"]:
            with contextlib.suppress(OSError):  # a file lost meanwhile is shown as a broken link, as in Slack
                content = (files_dir / str(f["id"])).read_bytes()
        files[str(f["id"])] = File(str(f["id"]), str(f["name"]), str(f["title"]), content)
    dms, urls = dict(record["dms"]), dict(list(dict(record["response_urls"]).items())[-MAX_RESPONSE_URLS:])
    epoch, next_id = int(record["epoch"]), int(record["next_id"])
    with state.lock:
        state.messages, state.views, state.files, state.dms, state.response_urls = messages, views, files, dms, urls
        state.epoch, state.next_id = epoch, max(next_id, state.next_id)
        state.changed()


def _replace(path: Path, data: bytes) -> None:
    # Written beside it, then renamed over it: a serve killed mid-write leaves the old file whole.
    # Created 0600: response URLs are the keys to post as expbot.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
