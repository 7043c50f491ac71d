"""Posting the daily digest to Slack: a parent message, its thread replies (paced), the chart."""
from __future__ import annotations

import time
from collections.abc import Callable

from slack_sdk import WebClient

from core.digest import Digest

# chat.postMessage allows about one message per second per channel: replies are paced, not
# retried into a rate limit.
PACE_SECONDS = 1.0


def post_digest(
    client: WebClient,
    channel: str,
    digest: Digest,
    chart_png: bytes | None,
    *,
    chart_name: str = "spend.png",
    chart_title: str = "Daily spend by project",
    sleep: Callable[[float], None] = time.sleep,
    pace: float = PACE_SECONDS,
) -> tuple[str, str]:
    """Post the parent, then each reply in its thread, then the chart; returns the parent's (channel, ts)."""
    parent = client.chat_postMessage(channel=channel, text=digest.parent_text, unfurl_links=False)
    # Slack answers with the channel's id, which the thread replies and file upload need.
    channel_id, ts = parent["channel"], parent["ts"]
    for reply in digest.replies:
        sleep(pace)
        client.chat_postMessage(channel=channel_id, thread_ts=ts, text=reply, unfurl_links=False)
    if chart_png is not None:
        sleep(pace)
        client.files_upload_v2(
            channel=channel_id, thread_ts=ts, file=chart_png, filename=chart_name, title=chart_title,
            alt_txt=chart_title,
        )
    return channel_id, ts
