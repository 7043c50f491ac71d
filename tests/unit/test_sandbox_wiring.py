"""The Slack sandbox's safety and wiring: when it is on, where it listens, who may open it; its Web API."""
from __future__ import annotations

import io
import json
from typing import Any

import pytest

from bot.config import Settings
from bot.sandbox.config import APPROVALS_CHANNEL, LAUNCH_CHANNEL, SandboxSettings, is_loopback, wiring_for
from bot.sandbox.delivery import Deliverer
from bot.sandbox.page import SandboxApp
from bot.sandbox.state import SandboxState
from bot.sandbox.webapi import WebApi
from core.errors import ExpbotError


def settings(tmp_path, **more: Any) -> Settings:
    return Settings(data_dir=tmp_path, http_port=0, **more)


@pytest.mark.parametrize("token", [{"slack_bot_token": "xoxb-real"}, {"slack_app_token": "xapp-real"}])
def test_never_active_when_a_real_slack_token_is_configured(tmp_path, token):
    assert wiring_for(settings(tmp_path, **token), SandboxSettings()) is None


def test_off_when_disabled_and_on_kubernetes_unless_asked_for(tmp_path):
    assert wiring_for(settings(tmp_path), SandboxSettings(enabled=False)) is None
    # A pod's loopback page helps nobody, and loopback only would fail the kubelet's probes.
    assert wiring_for(settings(tmp_path, backend="kubernetes"), SandboxSettings()) is None
    assert wiring_for(settings(tmp_path, backend="kubernetes"), SandboxSettings(enabled=True)) is not None


def test_on_loopback_by_default_with_slack_pointed_at_itself(tmp_path):
    wired = wiring_for(settings(tmp_path, http_host="0.0.0.0"), SandboxSettings())
    assert wired is not None
    s = wired.settings
    assert s.http_host == "127.0.0.1" and s.http_port > 0  # a free port chosen: the URL is known before serving
    assert s.slack_api_url == f"http://127.0.0.1:{s.http_port}/sandbox/api/"
    assert s.slack_bot_token.get_secret_value() == wired.bot_token
    assert s.slack_signing_secret.get_secret_value() == wired.signing_secret and len(wired.signing_secret) >= 32
    assert (s.slack_default_channel, s.slack_approvals_channel) == (LAUNCH_CHANNEL, APPROVALS_CHANNEL)
    assert "U0APPROVER" in s.slack_approver_ids() and "U0ADMIN" in s.slack_admin_ids()
    other = wiring_for(settings(tmp_path), SandboxSettings())
    assert other is not None and other.signing_secret != wired.signing_secret  # made up per serve


def test_an_empty_host_is_one_clear_line(tmp_path):
    with pytest.raises(ExpbotError, match="EXPBOT_SANDBOX_HOST"):
        wiring_for(settings(tmp_path), SandboxSettings(host=" "))


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("10.1.2.3", False), ("example.org", False)])
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


# --- the page's guard -----------------------------------------------------------------------------


def call(app: SandboxApp, path: str, remote: str, *, query: str = "", cookie: str = "", body: bytes = b"",
         method: str = "GET", headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"PATH_INFO": path, "REMOTE_ADDR": remote, "QUERY_STRING": query, "HTTP_COOKIE": cookie,
               "REQUEST_METHOD": method, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
               "HTTP_HOST": "127.0.0.1:3000", **(headers or {})}
    out = b"".join(app(environ, start))
    return seen["status"], seen["headers"], out


def sandbox(token: str | None = None) -> tuple[SandboxApp, SandboxState, list[str]]:
    state, inner_calls = SandboxState(), []

    def inner(environ, start):
        inner_calls.append(environ["PATH_INFO"])
        start("200 OK", [])
        return [b"slack"]

    api = WebApi(state, "xoxb-sandbox-test", "http://127.0.0.1:1")
    return SandboxApp(state, api, Deliverer(state, "http://127.0.0.1:1", "secret"), inner, token), state, inner_calls


def test_local_browsers_get_the_page_and_its_assets():
    app, _, _ = sandbox()
    status, headers, body = call(app, "/sandbox", "127.0.0.1")
    assert status == "200 OK" and b"/sandbox/static/sandbox.js" in body
    for asset in ("sandbox.js", "sandbox.css"):
        assert call(app, f"/sandbox/static/{asset}", "127.0.0.1")[0] == "200 OK"
    assert call(app, "/sandbox/static/../config.py", "127.0.0.1")[0] == "404 Not Found"


def test_other_paths_go_to_the_slack_endpoint():
    app, _, inner_calls = sandbox()
    assert call(app, "/slack/events", "10.0.0.9")[2] == b"slack"
    assert inner_calls == ["/slack/events"]


def test_non_local_clients_are_refused_without_the_token():
    app, _, _ = sandbox()
    assert call(app, "/sandbox", "10.0.0.9")[0] == "403 Forbidden"
    guarded, _, _ = sandbox(token="s3cret")
    assert call(guarded, "/sandbox", "10.0.0.9")[0] == "403 Forbidden"
    assert call(guarded, "/sandbox/state", "10.0.0.9", query="token=wrong")[0] == "403 Forbidden"
    status, headers, _ = call(guarded, "/sandbox", "10.0.0.9", query="token=s3cret")
    assert status == "200 OK" and headers["Set-Cookie"].startswith("expbot_sandbox=s3cret;")
    assert "HttpOnly" in headers["Set-Cookie"]
    assert call(guarded, "/sandbox/state", "10.0.0.9", cookie="expbot_sandbox=s3cret")[0] == "200 OK"


def test_other_web_pages_in_the_browser_cannot_drive_it():
    app, state, _ = sandbox()
    action = json.dumps({"user": "U0OWNER", "kind": "close", "view_id": "V1"}).encode()
    json_type = {"CONTENT_TYPE": "application/json"}
    assert call(app, "/sandbox/do", "127.0.0.1", body=action, method="POST", headers=json_type)[0] == "200 OK"
    # A cross-site form or text/plain post needs no preflight: refused whatever it says.
    plain = {"CONTENT_TYPE": "text/plain"}
    assert call(app, "/sandbox/do", "127.0.0.1", body=action, method="POST", headers=plain)[0] == "403 Forbidden"
    foreign = json_type | {"HTTP_ORIGIN": "https://evil.example"}
    assert call(app, "/sandbox/do", "127.0.0.1", body=action, method="POST", headers=foreign)[0] == "403 Forbidden"
    cross = json_type | {"HTTP_SEC_FETCH_SITE": "cross-site"}
    assert call(app, "/sandbox/do", "127.0.0.1", body=action, method="POST", headers=cross)[0] == "403 Forbidden"
    # DNS rebinding: another name that resolves to 127.0.0.1 is not this machine's page.
    rebound = {"HTTP_HOST": "evil.example:3000"}
    assert call(app, "/sandbox/state", "127.0.0.1", headers=rebound)[0] == "403 Forbidden"
    assert call(app, "/sandbox", "::1", headers={"HTTP_HOST": "[::1]:3000"})[0] == "200 OK"
    assert call(app, "/sandbox", "127.0.0.1", headers={"HTTP_HOST": "localhost:3000"})[0] == "200 OK"


def api(app: SandboxApp, method: str, args: dict, token: str = "xoxb-sandbox-test") -> dict:
    body = json.dumps(args).encode()
    headers = {"CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": f"Bearer {token}"}
    return json.loads(call(app, f"/sandbox/api/{method}", "127.0.0.1", body=body, method="POST", headers=headers)[2])


def test_the_web_api_needs_the_bot_token_and_answers_as_slack():
    app, state, _ = sandbox()
    assert api(app, "chat.postMessage", {"channel": "C0LAUNCH", "text": "hi"}, token="xoxb-guess") == \
        {"ok": False, "error": "invalid_auth"}
    assert api(app, "chat.postMessage", {"channel": "C0LAUNCH"}) == {"ok": False, "error": "no_text"}
    posted = api(app, "chat.postMessage", {"channel": "C0LAUNCH", "text": "parent", "blocks": [{"type": "divider"}]})
    assert posted["ok"] and posted["channel"] == "C0LAUNCH"
    reply = api(app, "chat.postMessage", {"channel": "C0LAUNCH", "text": "reply", "thread_ts": posted["ts"]})
    assert reply["ok"]
    assert api(app, "chat.update", {"channel": "C0LAUNCH", "ts": posted["ts"], "text": "edited"})["ok"]
    assert api(app, "chat.update", {"channel": "C0LAUNCH", "ts": "9.9", "text": "x"})["error"] == "message_not_found"
    parent = state.find("C0LAUNCH", posted["ts"])
    assert parent is not None and parent.text == "edited" and parent.edited and parent.blocks == [{"type": "divider"}]
    assert api(app, "views.open", {"trigger_id": "made-up", "view": {"type": "modal"}})["error"] == "expired_trigger_id"
    trigger = state.new_trigger("U0OWNER")
    opened = api(app, "views.open", {"trigger_id": trigger, "view": {"type": "modal", "blocks": []}})
    assert opened["ok"] and state.open_modal("U0OWNER").id == opened["view"]["id"]
    assert api(app, "views.open", {"trigger_id": trigger, "view": {"type": "modal"}})["ok"] is False  # used once
    dm = api(app, "conversations.open", {"users": "U0OWNER"})["channel"]["id"]
    assert dm == api(app, "conversations.open", {"users": "U0OWNER"})["channel"]["id"]


def test_a_file_upload_shares_the_file_in_its_thread():
    app, state, _ = sandbox()
    parent = api(app, "chat.postMessage", {"channel": "C0DIGEST", "text": "digest"})
    upload = api(app, "files.getUploadURLExternal", {"filename": "spend.png", "length": 4})
    assert upload["upload_url"].endswith(f"/sandbox/upload/{upload['file_id']}")
    assert call(app, f"/sandbox/upload/{upload['file_id']}", "127.0.0.1", body=b"\x89PNG", method="POST")[0] == "200 OK"
    done = api(app, "files.completeUploadExternal", {"files": [{"id": upload["file_id"], "title": "Spend"}],
                                                     "channel_id": "C0DIGEST", "thread_ts": parent["ts"]})
    assert done["ok"]
    shared = [m for m in state.messages if m.files]
    assert len(shared) == 1 and shared[0].thread_ts == parent["ts"]
    status, headers, body = call(app, f"/sandbox/files/{upload['file_id']}", "127.0.0.1")
    assert body == b"\x89PNG" and headers["Content-Type"] == "image/png"


def test_a_response_url_posts_ephemerally_to_whoever_acted():
    app, state, _ = sandbox()
    key = state.new_response_url_key("C0LAUNCH", "U0OTHER")
    body = json.dumps({"text": "Only approvers may do that.", "response_type": "ephemeral"}).encode()
    assert call(app, f"/sandbox/respond/{key}", "127.0.0.1", body=body, method="POST")[0] == "200 OK"
    assert call(app, "/sandbox/respond/unknown", "127.0.0.1", body=body, method="POST")[0] == "404 Not Found"
    note = state.messages[-1]
    assert note.ephemeral_to == "U0OTHER" and note.text == "Only approvers may do that."
    seen_by_owner = app.snapshot("U0OWNER", -1)["messages"]
    assert not seen_by_owner and len(app.snapshot("U0OTHER", -1)["messages"]) == 1


# --- the CLI posting into a running serve's sandbox ------------------------------------------------


def test_the_cli_posts_into_the_sandbox_of_a_running_serve_only(tmp_path):
    from bot.sandbox.client import FILE, posting_settings, publish

    wired = wiring_for(settings(tmp_path), SandboxSettings())
    assert wired is not None
    path = publish(wired)
    assert path == tmp_path / FILE and path.stat().st_mode & 0o777 == 0o600  # it holds the bot token
    posting = posting_settings(settings(tmp_path))
    assert posting.slack_bot_token.get_secret_value() == wired.bot_token
    assert posting.slack_api_url == wired.settings.slack_api_url and posting.slack_digest_channel == "C0DIGEST"

    real = settings(tmp_path, slack_bot_token="xoxb-real")
    assert posting_settings(real).slack_bot_token.get_secret_value() == "xoxb-real"  # real Slack wins

    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"pid": 2**22 + 12345}))  # that serve is gone
    assert posting_settings(settings(tmp_path)).slack_bot_token is None


def test_the_state_keeps_the_newest_messages_and_files_only():
    from bot.sandbox.state import MAX_FILES, MAX_MESSAGES

    app, state, _ = sandbox()
    for n in range(MAX_MESSAGES + 5):
        state.post("C0LAUNCH", "U0EXPBOT", f"message {n}", None)
    assert len(state.messages) == MAX_MESSAGES and state.messages[0].text == "message 5"
    uploads = [api(app, "files.getUploadURLExternal", {"filename": f"f{n}.png", "length": 1})["file_id"]
               for n in range(MAX_FILES + 3)]
    assert list(state.files) == uploads[3:]
    assert call(app, "/sandbox/state", "127.0.0.1", query="user=U0OWNER&seq=nonsense")[0] == "200 OK"
