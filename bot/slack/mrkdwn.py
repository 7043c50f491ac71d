"""Slack mrkdwn text: escaping user text, cutting it to a limit, mentions, date tokens, durations."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from core.durations import format_duration

ELLIPSIS = "…"
_USER_ID = re.compile(r"[UW][A-Z0-9]+")


def escape(text: str) -> str:
    """Escape &, < and > so user text cannot form Slack mrkdwn control sequences."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` chars ending in "…", never inside an &entity; or <...>."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:max(limit, 0)]
    cut = text[: limit - len(ELLIPSIS)]
    amp = cut.rfind("&")
    if amp >= len(cut) - 4 and ";" not in cut[amp:]:  # a cut "&amp" / "&lt" / "&g"
        cut = cut[:amp]
    lt = cut.rfind("<", max(0, len(cut) - 120))
    if lt != -1 and ">" not in cut[lt:]:  # a cut "<@U123" or "<!date^...": drop it whole
        cut = cut[:lt]
    return cut + ELLIPSIS


def mention(owner: str) -> str:
    """`<@U123>` for a Slack user id, else the owner's escaped plain name."""
    return f"<@{owner}>" if _USER_ID.fullmatch(owner) else escape(owner)


def date_token(when: datetime, fmt: str = "{date_short} {time}") -> str:
    """A Slack date token shown in the reader's timezone (fmt e.g. '{ago}'), UTC as fallback."""
    fallback = when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{fmt}|{fallback}>"


def limit_text(value: timedelta) -> str:
    """A runtime limit as people write it: whole hours up to 99h as '24h', else e.g. '7d'."""
    seconds = int(value.total_seconds())
    if seconds and seconds % 3600 == 0 and seconds < 100 * 3600:
        return f"{seconds // 3600}h"
    return format_duration(value)
