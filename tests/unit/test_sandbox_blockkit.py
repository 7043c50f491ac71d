"""The sandbox's Block Kit renderer: every golden message expbot has, and Slack's mrkdwn rules."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.blockkit import UNSUPPORTED, message_html, view_html
from bot.sandbox.mrkdwn import mrkdwn_html

GOLDEN = Path(__file__).parent / "golden"
NAMES = {"U012ABCDEF": "ana"}.get


def goldens() -> list[Path]:
    found = sorted(GOLDEN.glob("*.json"))
    assert len(found) >= 10, "the golden Block Kit files moved: point this test at them"
    return found


def as_messages(payload: Any) -> list[tuple[str | None, list[dict] | None, dict | None]]:
    """A golden file as (text, blocks, view): a message, a list of thread replies (blocks each), or a view."""
    if isinstance(payload, dict) and payload.get("type") in ("modal", "home"):
        return [(None, None, payload)]
    if isinstance(payload, dict):
        return [(payload.get("text"), payload.get("blocks"), None)]
    return [(None, blocks if isinstance(blocks, list) else [blocks], None) for blocks in payload]


def words_of(blocks: list[dict]) -> list[str]:
    """Every text object's text in the blocks, nested ones included."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                found.append(node["text"])
            for key, value in node.items():
                if key == "confirm":  # drawn by the page's confirm dialog, carried in a data attribute
                    continue
                if key == "placeholder" and "initial_option" in node:  # a chosen option hides it, as in Slack
                    continue
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return found


def visible_text(drawn: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", drawn))


@pytest.mark.parametrize("path", goldens(), ids=lambda p: p.stem)
def test_every_golden_message_renders_whole(path: Path):
    for text, blocks, view in as_messages(json.loads(path.read_text())):
        drawn = view_html(view, NAMES) if view else message_html(text, blocks, NAMES)
        assert UNSUPPORTED not in drawn, f"{path.name}: {drawn[drawn.find(UNSUPPORTED) - 80:][:200]}"
        shown = " ".join(visible_text(drawn).split())
        source = (view or {}).get("blocks") or blocks or []
        for words in words_of(source):
            # Each text's longest plain word must be on the page (its markup is checked below).
            plain = re.sub(r"<[^>]*>|[*_~`:]", " ", html.unescape(words)).split()
            if plain:
                longest = max(plain, key=len)
                placeholders = " ".join(re.findall(r'placeholder="([^"]*)"', drawn))
                assert longest in shown or longest in html.unescape(placeholders), \
                    f"{path.name}: {longest!r} of {words!r} is not shown"
        for button in re.findall(r'data-action="([^"]+)"', drawn):
            action = json.loads(html.unescape(button))
            assert action["action_id"] and action["type"] == "button"


def test_the_parent_draws_its_buttons_with_style_and_confirm_dialog():
    payload = json.loads((GOLDEN / "parent_running.json").read_text())
    drawn = message_html(payload["text"], payload["blocks"], NAMES)
    stop = re.search(r'<button class="bk-button danger" data-action="([^"]+)" data-confirm="([^"]+)">Stop</button>', drawn)
    assert stop, drawn
    assert json.loads(html.unescape(stop[1]))["action_id"] == "experiment_stop"
    confirm = json.loads(html.unescape(stop[2]))
    assert confirm["title"] == "Stop train-bert?" and confirm["confirm"] == "Stop" and confirm["style"] == "danger"
    assert "<b>train-bert</b>" in confirm["html"]
    assert '<span class="bk-mention">@ana</span>' in drawn  # <@U012ABCDEF> by name


def test_the_launch_modal_draws_inputs_selects_and_field_errors():
    view = json.loads((GOLDEN / "launch_modal.json").read_text())
    drawn = view_html(view, NAMES, errors={"launch_gpus": "expected a whole number"})
    assert '<div class="bk-input bk-has-error" data-block-id="launch_gpus">' in drawn
    assert '<div class="bk-field-error">expected a whole number</div>' in drawn
    assert '<select class="bk-select" data-action-id="input" data-type="static_select">' in drawn
    assert '<option value="h100" selected>h100</option>' in drawn
    assert '<textarea class="bk-textarea" data-action-id="input"' in drawn  # the command is multiline
    assert 'data-modal="submit">Launch</button>' in drawn or 'data-modal="submit">' in drawn
    assert "Launch experiment" in drawn


def test_the_digest_text_renders_as_mrkdwn():
    parent = (GOLDEN / "digest.txt").read_text().split("--- reply 1 ---")[0].removeprefix("--- parent ---\n")
    drawn = message_html(parent, None)
    assert "<b>GPU spend digest for Sat 21 Nov 2026</b>" in drawn and "<b>$1,234.50</b>" in drawn


@pytest.mark.parametrize("text, expected", [
    ("*bold* _it_ ~gone~ `x_y`", "<b>bold</b> <i>it</i> <s>gone</s> <code>x_y</code>"),
    ("2*3*4 and snake_case_name", "2*3*4 and snake_case_name"),  # not at word boundaries: as typed
    ("a &lt;b&gt; &amp; c", "a &lt;b&gt; &amp; c"),
    ("<script>alert(1)</script>", "<a href=\"#\" target=\"_blank\" rel=\"noopener\">script</a>alert(1)"
                                  "<a href=\"#\" target=\"_blank\" rel=\"noopener\">/script</a>"),
    ("<https://x.test/a_b|the_link>", '<a href="https://x.test/a_b" target="_blank" rel="noopener">the_link</a>'),
    ("<@U012ABCDEF> and <#C1|ml-runs>", '<span class="bk-mention">@ana</span> and <span class="bk-mention">#ml-runs</span>'),
    (":rocket: go :unknown_one:", "🚀 go :unknown_one:"),
    ("one\n&gt; quoted", 'one<br><span class="bk-quote">quoted</span>'),
    ("```\n*not bold*\n```", "<pre>*not bold*</pre>"),
])
def test_mrkdwn(text: str, expected: str):
    assert mrkdwn_html(text, NAMES) == expected


def test_date_tokens_show_the_date_not_the_token():
    drawn = mrkdwn_html("Expires <!date^1795338000^{date_short_pretty} {time}|2026-11-22 09:00 UTC>.")
    assert "!date" not in drawn and re.search(r"Nov 22 09:00 UTC", drawn), drawn
