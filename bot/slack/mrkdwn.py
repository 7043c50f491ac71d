"""Slack mrkdwn text: escaping user text, cutting it to a limit, mentions, date tokens, durations."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from core.durations import format_duration
from core.mrkdwn import SECTION_LIMIT, SLACK_USER_ID, escape, is_slack_user, mention

__all__ = ["ELLIPSIS", "SECTION_LIMIT", "SLACK_USER_ID", "date_token", "escape", "for_users", "from_core", "is_slack_user",
           "limit_text", "mention", "truncate"]

ELLIPSIS = "…"
# Where core's sentences name a person: "approved by U012AB3CD", "only U012AB3CD (the owner)",
# "asked U012AB3CD to keep", a budget's "user U012AB3CD". Only there: an id-like word elsewhere (a log line) pings nobody.
_PERSON = re.compile(rf"\b(by|only|asked|user) ({SLACK_USER_ID.pattern})\b")
# Advice for whoever runs expbot, e.g. "(set EXPBOT_LOCAL_GPUS)": a Slack user cannot act on it.
_OPERATOR_ADVICE = re.compile(r" ?\((?:[^()]*\s)?EXPBOT_[A-Z0-9_]+[^()]*\)")


def for_users(text: str) -> str:
    """`text` without advice only whoever runs expbot can follow ("(set EXPBOT_LOCAL_GPUS)"); plain text."""
    return _OPERATOR_ADVICE.sub("", text)


def from_core(text: str) -> str:
    """Core's plain sentence as Slack mrkdwn: escaped, the members it names as mentions, operator advice dropped."""
    return _PERSON.sub(r"\1 <@\2>", escape(for_users(text)))


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
