"""The sandbox's saved page: what one serve saves, the next loads; within the caps; a bad save set aside."""
from __future__ import annotations

import json
import logging
import stat

from bot.sandbox.state import MAX_FILES, SandboxState
from bot.sandbox.store import FILES_DIR, STATE_FILE, SandboxStore
from bot.sandbox.webapi import WebApi

TOKEN = "xoxb-sandbox-test"


def api(state: SandboxState) -> WebApi:
    return WebApi(state, TOKEN, "http://127.0.0.1:3000")


def call(web: WebApi, method: str, **args) -> dict:
    return web.call(method, json.dumps(args).encode(), "application/json", f"Bearer {TOKEN}")


def saved_and_loaded(state: SandboxState, tmp_path) -> SandboxState:
    SandboxStore(state, tmp_path).save()
    again = SandboxState()
    SandboxStore(again, tmp_path).load()
    return again


def test_messages_threads_edits_views_and_files_come_back(tmp_path):
    state = SandboxState()
    web = api(state)
    parent = call(web, "chat.postMessage", channel="C0LAUNCH", text="demo: running")
    call(web, "chat.postMessage", channel="C0LAUNCH", thread_ts=parent["ts"], text="attempt 1 started")
    call(web, "chat.update", channel="C0LAUNCH", ts=parent["ts"], text="demo: succeeded")
    call(web, "views.publish", user_id="U0OWNER", view={"type": "home", "blocks": []})
    dm = call(web, "conversations.open", users="U0OWNER")["channel"]["id"]
    upload = call(web, "files.getUploadURLExternal", filename="chart.png", length=3)
    assert web.uploaded(upload["file_id"], b"PNG")
    call(web, "files.completeUploadExternal", files=[{"id": upload["file_id"], "title": "Spend"}], channel_id="C0DIGEST")

    again = saved_and_loaded(state, tmp_path)
    assert [(m.channel, m.ts, m.thread_ts, m.text, m.edited) for m in again.messages] == \
           [(m.channel, m.ts, m.thread_ts, m.text, m.edited) for m in state.messages]
    assert again.find("C0LAUNCH", parent["ts"]).text == "demo: succeeded"
    assert again.home("U0OWNER") is not None and again.dms == {"U0OWNER": dm}
    assert (again.files[upload["file_id"]].content, again.files[upload["file_id"]].title) == (b"PNG", "Spend")
    assert stat.S_IMODE((tmp_path / STATE_FILE).stat().st_mode) == 0o600

    # The new serve replies in the old thread, and its ids never repeat the old ones.
    web = api(again)
    reply = call(web, "chat.postMessage", channel="C0LAUNCH", thread_ts=parent["ts"], text="stopped")
    assert reply["ok"] and again.messages[-1].thread_ts == parent["ts"]
    assert float(reply["ts"]) > max(float(m.ts) for m in state.messages)
    assert call(web, "files.getUploadURLExternal", filename="x.png", length=1)["file_id"] not in state.files


def test_evicted_files_leave_the_disk_too(tmp_path):
    state = SandboxState()
    web, store = api(state), SandboxStore(state, tmp_path)
    first = call(web, "files.getUploadURLExternal", filename="first.png", length=1)["file_id"]
    web.uploaded(first, b"1")
    store.save()
    assert (tmp_path / FILES_DIR / first).read_bytes() == b"1"
    for n in range(MAX_FILES):
        web.uploaded(call(web, "files.getUploadURLExternal", filename=f"f{n}.png", length=1)["file_id"], b"x")
    store.save()
    assert first not in state.files and not (tmp_path / FILES_DIR / first).exists()
    assert len(list((tmp_path / FILES_DIR).iterdir())) == MAX_FILES


def test_a_reply_to_a_parent_no_longer_kept_goes_to_the_channel_without_an_error(tmp_path):
    web = api(SandboxState())
    reply = call(web, "chat.postMessage", channel="C0LAUNCH", thread_ts="1700000000.000001", text="late news")
    assert reply["ok"] and web.state.messages[-1].thread_ts is None  # shown, and nothing retries it forever
    assert call(web, "chat.update", channel="C0LAUNCH", ts="1700000000.000001", text="x")["error"] == "message_not_found"


def test_an_unreadable_save_is_set_aside_with_one_line_and_the_page_starts_empty(tmp_path, caplog):
    (tmp_path / STATE_FILE).write_text('{"version": 1, "messages": [')
    state = SandboxState()
    with caplog.at_level(logging.WARNING, "expbot.sandbox"):
        SandboxStore(state, tmp_path).load()
    assert state.messages == [] and (tmp_path / (STATE_FILE + ".bad")).exists()
    assert not (tmp_path / STATE_FILE).exists()
    [line] = [r.getMessage() for r in caplog.records]
    assert STATE_FILE in line and "starting empty" in line and "\n" not in line


def test_a_failing_save_says_so_once_and_again_when_it_works(tmp_path, caplog):
    state = SandboxState()
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")  # the data directory is a file: every save fails the same way
    store = SandboxStore(state, blocked)
    state.post("C0LAUNCH", "U0EXPBOT", "hello", None)
    with caplog.at_level(logging.INFO, "expbot.sandbox"):
        store.save()
        store.save()
        blocked.unlink()
        blocked.mkdir()
        store.save()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "cannot save" in lines[0] and "again" in lines[1], lines
    assert (blocked / STATE_FILE).exists()
