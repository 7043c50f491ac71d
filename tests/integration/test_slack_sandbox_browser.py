"""Acceptance of the Slack sandbox (#17) in a real browser against a real `expbot serve`, no Slack token.

Each test saves screenshots of its steps under the directory the `sandbox` fixture prints.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.sandbox_browser import TOY, Page, Served, browser, sandbox, tab  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


def test_a_launch_updates_its_parent_live_and_its_thread_lists_the_attempts(tab: Page):
    tab.type(f"/experiment launch demo --max-restarts 1 -- {TOY} --steps 60 --step-seconds 0.05")
    parent = tab.parent("demo")
    parent.get_by_text("Running").wait_for()
    tab.shot("01-launch-running")
    parent.get_by_text("Succeeded").wait_for(timeout=60_000)
    assert "(edited)" in parent.inner_text()  # the same message, edited in place: no reload
    tab.shot("02-launch-succeeded")
    parent.locator(".replies").click()
    thread = tab.page.locator("#thread-messages")
    thread.get_by_text(re.compile(r"demo attempt 1 started")).wait_for()
    thread.get_by_text(re.compile(r"demo succeeded")).wait_for()
    tab.shot("03-launch-thread")


def test_a_bad_launch_shows_an_ephemeral_error(tab: Page):
    tab.type("/experiment launch bad-one --gpus lots -- python x.py")
    error = tab.page.locator("#messages .msg.bot.ephemeral", has_text="--gpus")  # expbot's answer, not the echo
    error.wait_for()
    assert "Only visible to you" in error.inner_text() and "lots" in error.inner_text()
    assert not tab.page.locator("#messages .msg:not(.ephemeral)", has_text="bad-one").count()  # nothing launched
    tab.shot("04-bad-launch-ephemeral")
    tab.be("U0OTHER")  # someone else does not see it
    tab.page.wait_for_function("!document.body.innerText.includes('--gpus lots')")


def test_the_launch_form_shows_a_field_error_then_launches(tab: Page):
    tab.type("/experiment launch")
    modal = tab.page.locator("#modal")
    modal.get_by_text("Launch experiment").first.wait_for()
    modal.locator("[data-block-id=launch_name] input").fill("from-form")
    modal.locator("[data-block-id=launch_command] textarea").fill("python -c pass")
    modal.locator("[data-block-id=launch_gpus] input").fill("lots")
    tab.shot("05-form-filled")
    modal.locator("button[data-modal=submit]").click()
    error = modal.locator("[data-block-id=launch_gpus] .bk-field-error")
    error.wait_for()
    assert "whole number" in error.inner_text() or "lots" in error.inner_text()
    assert modal.locator("[data-block-id=launch_name] input").input_value() == "from-form"  # typed text kept
    tab.shot("06-form-field-error")
    modal.locator("[data-block-id=launch_gpus] input").fill("0")
    modal.locator("button[data-modal=submit]").click()
    modal.wait_for(state="hidden")
    tab.parent("from-form").get_by_text("Succeeded").wait_for(timeout=60_000)
    tab.shot("07-form-launched")


def test_an_over_budget_launch_waits_for_an_approver(tab: Page):
    tab.type("/experiment launch big --project nlp --gpus 2 --gpu-type a100 --hours 10 -- python -c pass")
    tab.parent("big").get_by_text("approval", exact=False).wait_for()
    tab.channel("approvals")
    request = tab.page.locator("#messages .msg", has_text="wants to launch").last
    request.get_by_text("$50.00").wait_for()
    tab.shot("08-approval-requested")

    tab.be("U0OTHER")
    request.locator("button", has_text="Approve").click()
    tab.page.locator("#confirm-title").get_by_text("Approve this launch?").wait_for()
    tab.shot("09-approve-confirm")
    tab.page.click("#confirm-ok")
    refusal = tab.page.locator("#messages .msg.ephemeral", has_text="approver").last
    refusal.wait_for()
    tab.shot("10-approve-refused")
    assert request.locator("button", has_text="Approve").count() == 1  # still waiting

    tab.be("U0APPROVER")
    request.locator("button", has_text="Approve").click()
    tab.page.click("#confirm-ok")
    request.get_by_text("Approved by @priya").wait_for()
    tab.shot("11-approved")
    tab.channel("ml-runs")
    parent = tab.parent("big")
    parent.get_by_text("Succeeded").wait_for(timeout=60_000)
    parent.locator(".replies").click()
    tab.page.locator("#thread-messages").get_by_text(re.compile(r"approved by @priya")).wait_for()
    tab.shot("12-approved-thread")


def test_the_digest_of_a_seeded_day_has_its_thread_and_chart(tab: Page):
    tab.channel("digest")
    parent = tab.page.locator("#messages .msg", has=tab.page.locator(".replies")).first
    parent.wait_for(timeout=60_000)
    assert "$" in parent.inner_text()
    parent.locator(".replies").click()
    # The replies are paced a second apart; the open thread shows each as it comes, the chart last.
    tab.page.locator("#thread-messages .file img").wait_for(timeout=60_000)
    tab.page.wait_for_function(
        "document.querySelector('#thread-messages .file img').naturalWidth > 100")
    tab.shot("13-digest")


def test_stop_on_the_parent_as_the_owner_ends_the_experiment(tab: Page):
    tab.type(f"/experiment launch long-one -- {TOY} --steps 100000 --step-seconds 0.05")
    parent = tab.parent("long-one")
    parent.get_by_text("Running").wait_for()
    parent.locator("button", has_text="Stop").click()
    tab.page.locator("#confirm-title").get_by_text("Stop long-one?").wait_for()
    tab.shot("14-stop-confirm")
    tab.page.click("#confirm-ok")
    parent.get_by_text("Stopped").wait_for(timeout=60_000)
    tab.shot("15-stopped")


def test_a_long_log_arrives_as_a_file_in_a_dm_and_home_lists_the_experiments(tab: Page):
    lines = "[print('line', i, 'x' * 90) for i in range(300)]"
    tab.type(f'/experiment launch chatty -- python -c "{lines}"')
    parent = tab.parent("chatty")
    parent.get_by_text("Succeeded").wait_for(timeout=60_000)
    parent.locator("button", has_text="Logs").click()
    tab.page.locator("#messages .msg.ephemeral", has_text="sent it to you as a file").wait_for()
    tab.page.click("#dms a:text-is('expbot')")
    file_link = tab.page.locator("#messages .file a", has_text="chatty attempt 1")
    file_link.wait_for()
    tab.shot("16-logs-dm")
    content = tab.page.request.get(tab.page.url.split("/sandbox")[0] + file_link.get_attribute("href")).text()
    assert "line 299 " + "x" * 90 in content
    tab.page.click("#home-link")
    home = tab.page.locator("#messages .bk-home")
    home.get_by_text("chatty").first.wait_for()
    tab.shot("17-app-home")


def test_expbot_digest_from_the_cli_posts_into_the_sandbox(tab: Page, sandbox: Served):
    day = (datetime.now(timezone.utc) - timedelta(days=3)).date()
    posted = sandbox.expbot.cli("digest", "--date", day.isoformat())
    assert f"digest for {day} posted" in posted.stdout
    tab.channel("digest")
    title = f"{day:%a} {day.day} {day:%b %Y}"  # e.g. "Thu 3 Dec 2026", as the digest names its day
    tab.page.locator("#messages .msg", has_text=f"GPU spend digest for {title}").wait_for()
    tab.shot("18-digest-from-cli")
