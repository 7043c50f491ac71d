"""The real Bolt app over real HTTP, signed like Slack, against a local Slack Web API."""
from __future__ import annotations

import time

import pytest

from bot.slack.ids import ActionId, BlockId
from core.model import State
from tests.integration.slack_harness import CHANNEL, SlackBot, sign, slack_bot  # noqa: F401  (fixture)
from tests.polling import wait_for
from tests.slack.fake_slack_api import FakeSlackApi
from tests.slack.fixtures import BOT_TOKEN

pytestmark = pytest.mark.slow


# --- request verification ------------------------------------------------------------------------
def test_forged_stale_or_unsigned_requests_are_rejected_with_no_side_effect(slack_bot):
    body = "command=%2Fexperiment&text=launch+x+--+true&user_id=UOWNER&channel_id=C1&trigger_id=1.2.3"
    now = str(int(time.time()))
    assert slack_bot.post(body, "application/x-www-form-urlencoded", signature="v0=" + "0" * 64).status_code == 401
    stale = str(int(time.time()) - 301)
    assert slack_bot.post(body, "application/x-www-form-urlencoded", timestamp=stale,
                          signature=sign(body, stale)).status_code == 401
    assert slack_bot.post(body, "application/x-www-form-urlencoded", headers={
        "Content-Type": "application/x-www-form-urlencoded"}).status_code == 401
    # Signed with another app's secret.
    assert slack_bot.post(body, "application/x-www-form-urlencoded", timestamp=now,
                          signature=sign(body, now, secret="not-our-secret")).status_code == 401
    time.sleep(0.5)
    assert slack_bot.experiments() == []
    assert slack_bot.slack_api.calls_to("chat.postMessage") == []


# --- launching -----------------------------------------------------------------------------------
def test_launch_posts_a_thread_that_follows_the_experiment_to_success(slack_bot):
    response = slack_bot.slash("launch hello --max-restarts 0 -- python -c \"print('hi')\"")
    assert response.status_code == 200 and "Launching hello" in response.text
    exp = wait_for(lambda: (e := slack_bot.experiment("hello")) and e.state == State.SUCCEEDED and e, what="success")
    assert exp.owner == "UOWNER" and exp.channel == CHANNEL
    api = slack_bot.slack_api
    parent = wait_for(lambda: [m for m in api.messages(CHANNEL) if not m.thread_ts], what="the parent message")[0]
    replies = wait_for(lambda: (r := api.messages(CHANNEL, thread_ts=parent.ts)) and any("succeeded" in m.text for m in r) and r,
                   what="the success reply")
    texts = [m.text for m in replies]
    assert any("attempt 1 started" in t for t in texts)
    assert "<@UOWNER>" in next(t for t in texts if "succeeded" in t)  # owner mentioned on the terminal state
    final_parent = api.message(CHANNEL, parent.ts)
    assert final_parent.edits and "Succeeded" in str(final_parent.blocks)  # edited in place
    assert any(r.payload.get("text", "").startswith(":rocket: Launched hello") for r in api.responses())


def test_the_same_launch_delivered_three_times_launches_once(slack_bot):
    trigger = slack_bot.slack_api.new_trigger_id()
    for _ in range(3):
        assert slack_bot.slash("launch once -- python -c pass", trigger_id=trigger).status_code == 200
    wait_for(lambda: slack_bot.experiment("once") is not None, what="the launch")
    time.sleep(1.0)  # let every lazy listener finish
    assert [e.name for e in slack_bot.experiments()] == ["once"]


def test_bad_launch_text_answers_ephemerally_naming_the_option(slack_bot):
    response = slack_bot.slash("launch train --gpus four -- python train.py")
    assert response.status_code == 200
    assert "--gpus" in response.text and "four" in response.text and "Traceback" not in response.text
    time.sleep(0.3)
    assert slack_bot.experiments() == []


def test_unknown_subcommand_answers_with_help_and_the_closest_match(slack_bot):
    response = slack_bot.slash("lanch x -- true")
    assert response.status_code == 200 and "lanch" in response.text and "launch" in response.text


def test_more_gpus_than_exist_is_refused_in_the_ack(slack_bot):
    ack = slack_bot.slash("launch big --gpus 8 -- python t.py")
    assert ack.status_code == 200 and "big: needs 8 GPUs" in ack.text  # the ack's text is seen by its sender only
    assert slack_bot.experiments() == []


# --- stopping ------------------------------------------------------------------------------------
def launch_long_running(slack_bot, name: str = "long"):
    slack_bot.slash(f"launch {name} -- python -c \"import time; time.sleep(60)\"")
    return wait_for(lambda: (e := slack_bot.experiment(name)) and e.state == State.RUNNING and e, what="running")


def test_a_non_owner_pressing_stop_is_refused_and_nothing_changes(slack_bot):
    launch_long_running(slack_bot)
    assert slack_bot.press(ActionId.STOP.value, "long", user="UOTHER").status_code == 200
    refusal = wait_for(lambda: [r for r in slack_bot.slack_api.responses(slack_bot.last_response_url)], what="refusal")
    assert "only" in refusal[0].payload["text"] and refusal[0].payload.get("response_type") == "ephemeral"
    time.sleep(0.3)
    assert slack_bot.experiment("long").state == State.RUNNING


def test_the_owner_and_an_admin_may_stop(slack_bot):
    launch_long_running(slack_bot, "mine")
    slack_bot.press(ActionId.STOP.value, "mine", user="UOWNER")
    exp = wait_for(lambda: (e := slack_bot.experiment("mine")) and e.state == State.STOPPED and e, what="stopped")
    assert exp.stopped_by == "UOWNER"
    launch_long_running(slack_bot, "theirs")
    slack_bot.press(ActionId.STOP.value, "theirs", user="UADMIN")
    exp = wait_for(lambda: (e := slack_bot.experiment("theirs")) and e.state == State.STOPPED and e, what="admin stop")
    assert exp.stopped_by == "UADMIN"


def test_stop_subcommand_asks_for_confirmation_first(slack_bot):
    launch_long_running(slack_bot, "confirm-me")
    slack_bot.slash("stop confirm-me")
    confirm = wait_for(lambda: slack_bot.slack_api.responses(slack_bot.last_response_url), what="confirmation")
    assert "experiment_stop" in str(confirm[0].payload.get("blocks"))
    assert slack_bot.experiment("confirm-me").state == State.RUNNING


# --- modal ---------------------------------------------------------------------------------------
def modal_values(**fields: str):
    values = {}
    for block, value in fields.items():
        block_id = BlockId[block.upper()].value
        if block in ("gpu_type", "project"):
            values[block_id] = {"input": {"type": "static_select", "selected_option": {"value": value}}}
        else:
            values[block_id] = {"input": {"type": "plain_text_input", "value": value}}
    return values


def test_launch_without_arguments_opens_the_modal_within_the_trigger_life(slack_bot):
    assert slack_bot.slash("launch").status_code == 200
    [call] = slack_bot.slack_api.calls_to("views.open")
    assert call.ok and call.args["view"]["callback_id"] == "launch_modal"


def test_modal_errors_point_at_the_field_and_a_good_submission_launches(slack_bot):
    bad = slack_bot.submit_view("V1", modal_values(name="from-modal", command="python -c pass", gpus="lots",
                                                    max_runtime="1h", max_restarts="1"))
    assert bad.status_code == 200
    body = bad.json()
    assert body["response_action"] == "errors" and BlockId.GPUS.value in body["errors"]
    assert slack_bot.experiments() == []
    good = modal_values(name="from-modal", command="python -c pass", gpus="0", max_runtime="1h", max_restarts="1")
    for _ in range(2):  # a double click on Submit
        assert slack_bot.submit_view("V2", good).status_code == 200
    exp = wait_for(lambda: slack_bot.experiment("from-modal"), what="the modal launch")
    assert exp.channel == CHANNEL and exp.spec.max_restarts == 1
    time.sleep(0.5)
    assert len(slack_bot.experiments()) == 1


def test_modal_keeps_the_form_open_when_the_name_is_in_use_or_the_gpus_never_fit(slack_bot):
    launch_long_running(slack_bot, "busy")
    fields = {"command": "python -c pass", "max_runtime": "1h", "max_restarts": "1"}
    for view_id, typed, block, words in [
        ("VBUSY", {"name": "busy", "gpus": "0"}, BlockId.NAME, "already RUNNING"),
        ("VSWEEP", {"name": "busy", "gpus": "0", "sweep": "lr=1,2"}, None, None),  # busy-1, busy-2 are free
        ("VBIG", {"name": "big", "gpus": "8"}, BlockId.GPUS, "needs 8 GPUs but this machine has 2"),
    ]:
        response = slack_bot.submit_view(view_id, modal_values(**fields, **typed))
        assert response.status_code == 200
        if block is None:
            assert not response.content or "errors" not in response.json()
            continue
        body = response.json()
        assert body["response_action"] == "errors" and list(body["errors"]) == [block.value]
        assert words in body["errors"][block.value] and "Traceback" not in response.text
        assert "EXPBOT_" not in response.text  # advice for whoever runs expbot is not the user's
    wait_for(lambda: slack_bot.experiment("busy-2"), what="the sweep that fits")
    # A sweep whose member name is taken stays open too, on the Name field.
    body = slack_bot.submit_view("VSWEEP2", modal_values(**fields, name="busy", gpus="0", sweep="lr=1,2")).json()
    assert body["response_action"] == "errors" and "'busy-1' is already" in body["errors"][BlockId.NAME.value]
    time.sleep(0.5)
    assert not any("already" in e.text or "GPUs" in e.text for e in slack_bot.slack_api.ephemerals())
    assert sorted(e.name for e in slack_bot.experiments()) == ["busy", "busy-1", "busy-2"]


def test_a_long_modal_error_keeps_its_actionable_end(slack_bot):
    name = "n" * 40  # the longest name allowed, so sweep members (name-2) are too long
    body = slack_bot.submit_view("VLONG", modal_values(name=name, command="python -c pass", sweep="lr=1,2")).json()
    message = body["errors"][BlockId.NAME.value]
    assert len(message) > 150 and message.endswith("so use a name of at most 38")


class SlowViewsOpen(FakeSlackApi):
    """The local Slack Web API, with views.open answering only after `delay` seconds."""

    delay = 0.0

    def _serve_api(self, method, *args):
        if method == "views.open":
            time.sleep(self.delay)
        return super()._serve_api(method, *args)


@pytest.mark.parametrize("fault", ["429", "503", "slow"])
def test_launch_form_that_slack_will_not_open_is_answered_within_the_3_seconds(tmp_path, fault):
    with SlowViewsOpen(bot_token=BOT_TOKEN) as api:
        bot = SlackBot(tmp_path / "data", api)
        try:
            if fault == "429":
                api.rate_limit("views.open", times=1, retry_after=5)
            elif fault == "503":
                api.fail("views.open", times=3, status=503)
            else:
                api.delay = 4.0
            started = time.monotonic()
            response = bot.slash("launch")
            took = time.monotonic() - started
        finally:
            bot.close()
        assert response.status_code == 200 and took < 3.0  # Slack's deadline for the ack
        assert "would not open the launch form in time; please try again" in response.text
        if fault != "slow":  # the slow call is recorded only when it finally answers
            assert len(api.calls_to("views.open")) == 1  # one try: the trigger would be dead by a retry


def test_an_over_budget_modal_launch_says_it_waits_for_approval(tmp_path, slack_api):
    config = tmp_path / "expbot.toml"
    config.write_text('[budgets]\nprojects = { nlp = 40.0 }\napproval_ttl_hours = 24\n')
    bot = SlackBot(tmp_path / "data", slack_api, config_file=str(config), slack_approvers="UAPPROVER",
                   slack_approvals_channel="C0APPROVALS")
    try:
        # 2 a100s for 10 hours (50) is over project nlp's 40.
        values = modal_values(name="big", command="python -c pass", gpus="2", gpu_type="a100",
                              max_runtime="10h", project="nlp")
        assert bot.submit_view("VBUDGET", values).status_code == 200
        [told] = wait_for(lambda: slack_api.ephemerals(CHANNEL, user="UOWNER"), what="the ephemeral")
        assert bot.experiment("big").state == State.PENDING_APPROVAL
        assert "waits for an approver" in told.text and "Launched" not in told.text
    finally:
        bot.close()


# --- App Home, logs, delivery --------------------------------------------------------------------
def test_app_home_is_published_once_per_event_even_if_redelivered(slack_bot):
    launch_long_running(slack_bot, "homed")
    event = {"type": "app_home_opened", "user": "UOWNER", "tab": "home", "channel": "D0HOME"}
    for retry in ("", "1"):
        headers_kw = {}
        response = slack_bot.event(event, event_id="Ev0HOME01", **headers_kw)
        assert response.status_code == 200, retry
    published = wait_for(lambda: slack_bot.slack_api.calls_to("views.publish"), what="views.publish")
    time.sleep(0.5)
    assert len(slack_bot.slack_api.calls_to("views.publish")) == 1
    assert published[0].args["user_id"] == "UOWNER" and "homed" in str(published[0].args["view"])


def test_long_logs_arrive_as_a_file(slack_bot):
    slack_bot.slash("launch chatty -- python -c \"[print('line', i, 'x' * 80) for i in range(400)]\"")
    wait_for(lambda: (e := slack_bot.experiment("chatty")) and e.state == State.SUCCEEDED, what="chatty to finish")
    slack_bot.slash("logs chatty")
    files = wait_for(lambda: slack_bot.slack_api.uploaded_files(), what="the upload")
    assert "line 399" in files[0].content.decode() if isinstance(files[0].content, bytes) else "line 399" in files[0].content


def test_a_rate_limited_post_is_retried_after_retry_after(slack_bot):
    slack_bot.slack_api.rate_limit("chat.postMessage", times=1, retry_after=1)
    slack_bot.slash("launch patient -- python -c pass")
    wait_for(lambda: [m for m in slack_bot.slack_api.messages(CHANNEL) if not m.thread_ts], timeout=15, what="the parent")
    statuses = [c.status for c in slack_bot.slack_api.calls_to("chat.postMessage")]
    assert statuses[0] == 429 and 200 in statuses


def test_a_launch_is_parsed_once_per_delivery(slack_bot, monkeypatch):
    import bot.slack.command
    import bot.slack.launch_form
    import core.handlers
    from core.grammar import parse_launch

    calls: list[str] = []

    def counting(text, config):
        calls.append(text)
        return parse_launch(text, config)

    for module in (bot.slack.command, bot.slack.launch_form, core.handlers):
        monkeypatch.setattr(module, "parse_launch", counting)
    slack_bot.slash("launch once -- python -c pass")
    wait_for(lambda: slack_bot.experiment("once"), what="the slash launch stored")
    slack_bot.submit_view("VONCE", modal_values(name="once-form", command="python -c pass"))
    wait_for(lambda: slack_bot.experiment("once-form"), what="the form launch stored")
    assert len(calls) == 2, calls  # one parse each: in the ack, carried to the launch after it
