"""The local Slack Web API server, driven by the real slack_sdk WebClient."""

from __future__ import annotations

import io
import json
import threading
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from tests.slack.fake_slack_api import RESPONSE_URL, UPLOAD, FakeSlackApi


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(slack_api: FakeSlackApi) -> WebClient:
    return WebClient(token=slack_api.bot_token, base_url=slack_api.base_url, timeout=5)


def error_of(call) -> str:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value.response["error"]


def modal(title: str = "Launch", blocks: list | None = None, **extra) -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": blocks or [], **extra}


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(text: str, value: str = "v", action_id: str = "a") -> dict:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "value": value, "action_id": action_id}


# -- auth ------------------------------------------------------------------------------------------


def test_auth_test_with_the_bot_token(slack_api: FakeSlackApi, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["ok"] and resp["user_id"] == slack_api.bot_user_id and resp["bot_id"] == slack_api.bot_id
    assert slack_api.base_url.endswith("/api/")
    assert slack_api.calls_to("auth.test")[0].token == slack_api.bot_token


def test_unknown_or_missing_token_is_refused(slack_api: FakeSlackApi) -> None:
    bad = WebClient(token="xoxb-wrong", base_url=slack_api.base_url)
    assert error_of(lambda: bad.chat_postMessage(channel="C1", text="hi")) == "invalid_auth"
    anonymous = WebClient(base_url=slack_api.base_url)
    assert error_of(lambda: anonymous.auth_test()) == "not_authed"
    assert slack_api.messages() == []
    assert [c.response["error"] for c in slack_api.calls] == ["invalid_auth", "not_authed"]


def test_token_as_form_parameter_and_get_requests(slack_api: FakeSlackApi) -> None:
    url = f"{slack_api.base_url}auth.test?token={slack_api.bot_token}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert json.loads(resp.read())["ok"] is True
    assert slack_api.calls[-1].http_method == "GET"


def test_unknown_method(client: WebClient) -> None:
    assert error_of(lambda: client.api_call("chat.explode")) == "unknown_method"


# -- required arguments ----------------------------------------------------------------------------


def test_required_arguments(slack_api: FakeSlackApi, client: WebClient) -> None:
    assert error_of(lambda: client.chat_postMessage(channel="", text="x")) == "channel_not_found"
    assert error_of(lambda: client.api_call("chat.postMessage", params={"channel": "C1"})) == "no_text"
    assert error_of(lambda: client.chat_postMessage(channel="C1", text="x" * 40_001)) == "msg_too_long"
    assert error_of(lambda: client.chat_update(channel="C1", ts="1.000001", text="x")) == "message_not_found"
    assert error_of(lambda: client.chat_postEphemeral(channel="C1", user="", text="x")) == "user_not_found"
    assert error_of(lambda: client.views_open(trigger_id="", view=modal())) == "missing_argument"
    assert error_of(lambda: client.api_call("views.update", json={"view": modal()})) == "missing_argument"
    assert error_of(lambda: client.views_update(view=modal(), view_id="V404")) == "not_found"
    assert error_of(lambda: client.views_publish(user_id="U1", view=modal())) == "invalid_arguments"
    assert error_of(lambda: client.usergroups_users_list(usergroup="S404")) == "no_such_subteam"
    assert error_of(lambda: client.users_info(user="U404")) == "user_not_found"
    assert error_of(lambda: client.files_getUploadURLExternal(filename="a.txt", length=None)) == "missing_argument"
    assert error_of(lambda: client.chat_getPermalink(channel="C1", message_ts="9.9")) == "message_not_found"


def test_users_usergroups_and_dms(slack_api: FakeSlackApi, client: WebClient) -> None:
    slack_api.add_user("U1", "ada", tz="Europe/Paris")
    slack_api.add_usergroup("S1", ["U1", "U2"])
    user = client.users_info(user="U1")["user"]
    assert user["name"] == "ada" and user["tz"] == "Europe/Paris" and user["tz_offset"] in (3600, 7200)
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    dm = client.conversations_open(users="U1")["channel"]["id"]
    assert dm.startswith("D") and client.conversations_open(users=["U1"])["channel"]["id"] == dm
    posted = client.chat_postMessage(channel=dm, text="hello")
    assert client.chat_getPermalink(channel=dm, message_ts=posted["ts"])["permalink"].startswith("https://")


def test_strict_users_refuses_unknown_users() -> None:
    with FakeSlackApi(strict_users=True) as server:
        client = WebClient(token=server.bot_token, base_url=server.base_url)
        assert error_of(lambda: client.conversations_open(users="U404")) == "user_not_found"


# -- messages --------------------------------------------------------------------------------------


def test_post_update_and_history(slack_api: FakeSlackApi, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="digest", blocks=[section("*total* $12")])
    assert parent["channel"] == "C1" and parent["message"]["text"] == "digest"
    reply = client.chat_postMessage(channel="C1", text="per project", thread_ts=parent["ts"])
    client.chat_update(channel="C1", ts=parent["ts"], text="digest v2", blocks=[section("*total* $13")])
    client.chat_update(channel="C1", ts=parent["ts"], text="digest v3")

    first, second = slack_api.messages("C1")
    assert first.ts == parent["ts"] and first.text == "digest v3"
    assert first.blocks == [section("*total* $13")]  # not given -> kept, as Slack does
    assert [e["text"] for e in first.edits] == ["digest", "digest v2"]
    assert first.edits[0]["blocks"] == [section("*total* $12")]
    assert second.ts == reply["ts"] and second.thread_ts == parent["ts"]
    assert slack_api.messages("C1", thread_ts=parent["ts"]) == [second]
    assert slack_api.messages("C2") == []
    assert slack_api.calls_to("chat.postMessage")[0].args["blocks"] == [section("*total* $12")]
    assert float(reply["ts"]) > float(parent["ts"])


def test_update_needs_a_ts_issued_in_that_channel(client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C1", text="x")["ts"]
    assert error_of(lambda: client.chat_update(channel="C2", ts=ts, text="y")) == "message_not_found"
    eph = client.chat_postEphemeral(channel="C1", user="U1", text="only you")["message_ts"]
    assert error_of(lambda: client.chat_update(channel="C1", ts=eph, text="y")) == "message_not_found"


def test_ephemerals_are_recorded_apart(slack_api: FakeSlackApi, client: WebClient) -> None:
    client.chat_postEphemeral(channel="C1", user="U1", text="refused")
    assert [e.text for e in slack_api.ephemerals(user="U1")] == ["refused"]
    assert slack_api.messages() == []


# -- Block Kit limits ------------------------------------------------------------------------------


def test_button_text_over_75_chars(client: WebClient) -> None:
    blocks = [{"type": "actions", "elements": [button("x" * 76)]}]
    with pytest.raises(SlackApiError) as info:
        client.chat_postMessage(channel="C1", text="t", blocks=blocks)
    assert info.value.response["error"] == "invalid_blocks"
    assert any("/blocks/0/elements/0/text/text" in e for e in info.value.response["errors"])
    client.chat_postMessage(channel="C1", text="t", blocks=[{"type": "actions", "elements": [button("x" * 75)]}])


def test_51_blocks_in_a_message(client: WebClient) -> None:
    assert error_of(lambda: client.chat_postMessage(channel="C1", text="t", blocks=[section("s")] * 51)) \
        == "invalid_blocks"
    client.chat_postMessage(channel="C1", text="t", blocks=[section("s")] * 50)


def test_modal_title_over_24_chars(slack_api: FakeSlackApi, client: WebClient) -> None:
    trigger = slack_api.new_trigger_id()
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=modal("x" * 25))) == "invalid_blocks"
    client.views_open(trigger_id=trigger, view=modal("x" * 24))  # a refused call does not use the trigger


@pytest.mark.parametrize(
    "blocks",
    [
        [section("x" * 3001)],
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        [{"type": "actions", "elements": [button("ok", value="v" * 2001)]}],
        [{"type": "actions", "elements": [button("ok", action_id="a" * 256)]}],
        [{**section("s"), "block_id": "b" * 256}],
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
        [{"type": "actions", "elements": [button("ok", action_id=f"a{i}") for i in range(26)]}],
        [{**section("s"), "accessory": {"type": "static_select", "action_id": "s", "options": [
            {"text": {"type": "plain_text", "text": "o" * 76}, "value": "v"}]}}],
        [{**section("s"), "accessory": {"type": "static_select", "action_id": "s", "options": [
            {"text": {"type": "plain_text", "text": "o"}, "value": "v" * 151}]}}],
        [{**section("s"), "accessory": {"type": "static_select", "action_id": "s", "options": [
            {"text": {"type": "plain_text", "text": f"o{i}"}, "value": f"v{i}"} for i in range(101)]}}],
    ],
    ids=["section", "header", "button-value", "action_id", "block_id", "context", "actions", "option-text",
         "option-value", "101-options"],
)
def test_message_block_limits(client: WebClient, blocks: list) -> None:
    assert error_of(lambda: client.chat_postMessage(channel="C1", text="t", blocks=blocks)) == "invalid_blocks"


@pytest.mark.parametrize(
    "view",
    [
        modal(blocks=[section("s")] * 101),
        modal(submit={"type": "plain_text", "text": "s" * 25}),
        modal(close={"type": "plain_text", "text": "c" * 25}),
        modal(callback_id="c" * 256),
        modal(private_metadata="m" * 3001),
        {"type": "modal", "blocks": []},
        {"type": "dialog", "title": {"type": "plain_text", "text": "t"}, "blocks": []},
    ],
    ids=["101-blocks", "submit", "close", "callback_id", "private_metadata", "no-title", "bad-type"],
)
def test_view_limits(slack_api: FakeSlackApi, client: WebClient, view: dict) -> None:
    trigger = slack_api.new_trigger_id()
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=view)) == "invalid_blocks"


def test_home_view_allows_100_blocks(slack_api: FakeSlackApi, client: WebClient) -> None:
    home = {"type": "home", "blocks": [section("s")] * 100}
    first = client.views_publish(user_id="U1", view=home)["view"]
    again = client.views_publish(user_id="U1", view={**home, "blocks": [section("t")]})["view"]
    assert first["id"] == again["id"] and len(slack_api.views[first["id"]].history) == 1
    assert error_of(lambda: client.views_publish(user_id="U1", view={**home, "blocks": [section("s")] * 101})) \
        == "invalid_blocks"


# -- trigger_id ------------------------------------------------------------------------------------


def test_trigger_id_works_once(slack_api: FakeSlackApi, client: WebClient) -> None:
    trigger = slack_api.new_trigger_id()
    opened = client.views_open(trigger_id=trigger, view=modal("Loading..."))["view"]
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=modal())) == "exchanged_trigger_id"
    assert error_of(lambda: client.views_open(trigger_id="1.2.nope", view=modal())) == "invalid_trigger_id"
    updated = client.views_update(view_id=opened["id"], view=modal("Launch"), hash=opened["hash"])["view"]
    assert updated["title"]["text"] == "Launch"
    assert error_of(lambda: client.views_update(view_id=opened["id"], view=modal(), hash=opened["hash"])) \
        == "hash_conflict"
    assert slack_api.views[opened["id"]].history[0]["title"]["text"] == "Loading..."


def test_trigger_id_expires_after_3_seconds(slack_api: FakeSlackApi, client: WebClient) -> None:
    slack_api.clock = clock = Clock()
    fresh, stale = slack_api.new_trigger_id(), slack_api.new_trigger_id()
    clock.now += 2.9
    client.views_open(trigger_id=fresh, view=modal())
    clock.now += 0.2
    assert error_of(lambda: client.views_open(trigger_id=stale, view=modal())) == "expired_trigger_id"


def test_trigger_ttl_is_configurable() -> None:
    clock = Clock()
    with FakeSlackApi(clock=clock, trigger_ttl=10) as server:
        client = WebClient(token=server.bot_token, base_url=server.base_url)
        trigger = server.new_trigger_id()
        clock.now += 9
        client.views_push(trigger_id=trigger, view=modal())
        assert server.calls[-1].time == clock.now


def test_views_update_by_external_id(slack_api: FakeSlackApi, client: WebClient) -> None:
    client.views_open(trigger_id=slack_api.new_trigger_id(), view=modal(external_id="exp-1"))
    client.views_update(external_id="exp-1", view=modal("Done"))
    assert [v.view["title"]["text"] for v in slack_api.views.values()] == ["Done"]


# -- rate limits and server errors -----------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(slack_api: FakeSlackApi, client: WebClient) -> None:
    slack_api.rate_limit("chat.postMessage", times=1, retry_after=7)
    with pytest.raises(SlackApiError) as info:
        client.chat_postMessage(channel="C1", text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.response["error"] == "ratelimited"
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    assert [c.status for c in slack_api.calls_to("chat.postMessage")] == [429, 200]


def test_rate_limit_retry_handler_retries_and_succeeds(slack_api: FakeSlackApi) -> None:
    client = WebClient(token=slack_api.bot_token, base_url=slack_api.base_url,
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    slack_api.rate_limit("chat.update", times=1, retry_after=0)  # the handler sleeps Retry-After + <1 s
    ts = client.chat_postMessage(channel="C1", text="x")["ts"]
    assert client.chat_update(channel="C1", ts=ts, text="y")["ok"]
    assert [c.status for c in slack_api.calls_to("chat.update")] == [429, 200]
    assert len(slack_api.messages("C1")) == 1 and slack_api.messages("C1")[0].text == "y"


def test_server_error_retry_handler(slack_api: FakeSlackApi) -> None:
    client = WebClient(token=slack_api.bot_token, base_url=slack_api.base_url,
                       retry_handlers=[ServerErrorRetryHandler(
                           max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.01))])
    slack_api.fail("chat.postMessage", times=1, status=503)
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    assert [c.status for c in slack_api.calls_to("chat.postMessage")] == [503, 200]
    slack_api.fail("chat.postMessage", times=2, status=500)
    with pytest.raises(SlackApiError) as info:
        client.chat_postMessage(channel="C1", text="x")
    assert info.value.response.status_code == 500
    assert len(slack_api.messages("C1")) == 1


# -- files -----------------------------------------------------------------------------------------


def test_files_upload_v2(slack_api: FakeSlackApi, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="run 42 failed")["ts"]
    resp = client.files_upload_v2(content="line 1\nline 2\n", filename="logs.txt", channel="C1", thread_ts=parent,
                                  title="Last 200 lines", initial_comment="attempt 3 logs")
    assert resp["file"]["title"] == "Last 200 lines"
    (upload,) = slack_api.uploaded_files()
    assert upload.content == b"line 1\nline 2\n" and upload.length == len(upload.content)
    assert (upload.filename, upload.channel_id, upload.thread_ts) == ("logs.txt", "C1", parent)
    assert [c.method for c in slack_api.calls] == [
        "chat.postMessage", "files.getUploadURLExternal", UPLOAD, "files.completeUploadExternal"]
    assert slack_api.calls_to("files.completeUploadExternal")[0].args["files"] == [
        {"id": upload.id, "title": "Last 200 lines"}]
    shared = slack_api.messages("C1", thread_ts=parent)[0]
    assert shared.text == "attempt 3 logs" and shared.files[0]["id"] == upload.id


def test_complete_upload_needs_uploaded_content(slack_api: FakeSlackApi, client: WebClient) -> None:
    file_id = client.files_getUploadURLExternal(filename="a.txt", length=3)["file_id"]
    assert error_of(lambda: client.files_completeUploadExternal(files=[{"id": file_id}])) == "file_not_found"


# -- response_url ----------------------------------------------------------------------------------


def test_response_url_is_good_for_five_uses(slack_api: FakeSlackApi) -> None:
    url = slack_api.new_response_url()
    hook = WebhookClient(url)
    statuses = [hook.send(text=f"reply {i}", response_type="ephemeral").status_code for i in range(6)]
    assert statuses == [200] * 5 + [404]
    assert hook.send(text="again").body == "used_url"
    assert [r.payload["text"] for r in slack_api.responses(url) if r.status == 200] == [
        f"reply {i}" for i in range(5)]
    assert len(slack_api.calls_to(RESPONSE_URL)) == 7


def test_response_url_expires_and_replaces_original(slack_api: FakeSlackApi, client: WebClient) -> None:
    slack_api.clock = clock = Clock()
    ts = client.chat_postMessage(channel="C1", text="GPU idle", blocks=[section("Keep?")])["ts"]
    url = slack_api.new_response_url(channel="C1", message_ts=ts)
    assert WebhookClient(url).send(text="Kept for 2h", replace_original=True).status_code == 200
    assert slack_api.message("C1", ts).text == "Kept for 2h" and slack_api.message("C1", ts).blocks is None
    WebhookClient(url).send(text="done", response_type="in_channel")
    assert [m.text for m in slack_api.messages("C1")] == ["Kept for 2h", "done"]
    clock.now += 30 * 60 + 1
    assert WebhookClient(url).send(text="late").body == "expired_url"


# -- asynchronous callers --------------------------------------------------------------------------


def test_wait_for_a_call_made_later(slack_api: FakeSlackApi, client: WebClient) -> None:
    timer = threading.Timer(0.1, lambda: client.chat_postMessage(channel="C9", text="lazy"))
    timer.start()
    try:
        (call,) = slack_api.wait_for_calls("chat.postMessage", timeout=5)
        assert call.args["text"] == "lazy"
        assert slack_api.wait_for(lambda: slack_api.messages("C9"))[0].text == "lazy"
        with pytest.raises(AssertionError):
            slack_api.wait_for(lambda: slack_api.messages("C404"), timeout=0.05)
    finally:
        timer.join()


# -- request encodings -----------------------------------------------------------------------------


def test_form_and_multipart_bodies_are_decoded(slack_api: FakeSlackApi, client: WebClient) -> None:
    blocks = [section("from a form")]
    client.api_call("chat.postMessage", params={"channel": "C1", "text": "f", "blocks": json.dumps(blocks)})
    client.api_call("chat.postMessage", data={"channel": "C1", "text": "m"}, files={"file": io.BytesIO(b"raw")})
    form, multipart = slack_api.messages("C1")
    assert form.blocks == blocks and multipart.text == "m"
    assert slack_api.calls[-1].args["file"] == b"raw"
    bad = client.api_call  # a malformed blocks string is Slack's invalid_blocks_format
    assert error_of(lambda: bad("chat.postMessage", params={"channel": "C1", "blocks": "[oops"})) \
        == "invalid_blocks_format"
