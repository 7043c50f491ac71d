"""Slack mrkdwn text helpers: escaping, mentions, and cutting text without breaking an entity."""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.slack import mrkdwn


def test_escape_and_mention():
    assert mrkdwn.escape("<@U1> & <!here>") == "&lt;@U1&gt; &amp; &lt;!here&gt;"
    assert mrkdwn.mention("U012ABCDEF") == "<@U012ABCDEF>" and mrkdwn.mention("W0ABC") == "<@W0ABC>"
    assert mrkdwn.mention("ana") == "ana" and mrkdwn.mention("<!channel>") == "&lt;!channel&gt;"
    assert mrkdwn.mention("Ulrike") == "Ulrike"


@given(st.text(alphabet="ab&<> ", max_size=300), st.integers(min_value=0, max_value=400))
def test_truncate_never_exceeds_the_limit_nor_splits_an_entity(raw, limit):
    escaped = mrkdwn.escape(raw)
    cut = mrkdwn.truncate(escaped, limit)
    assert len(cut) <= limit
    if len(escaped) <= limit:
        assert cut == escaped
    else:
        assert cut.endswith("…") or limit == 0
        body = cut.removesuffix("…")
        assert escaped.startswith(body)
        assert not re.search(r"&(?!amp;|lt;|gt;)", body)


def test_truncate_examples():
    assert mrkdwn.truncate("abc&amp;def", 6) == "abc…"
    assert mrkdwn.truncate("abc&amp;def", 9) == "abc&amp;…"
    assert mrkdwn.truncate("hi <@U123> there", 8) == "hi …"
    assert mrkdwn.truncate("short", 10) == "short"
