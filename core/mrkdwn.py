"""Slack mrkdwn facts that core's own texts (the digest) and the Slack layer share: one of each."""
from __future__ import annotations

import re

SECTION_LIMIT = 3000  # Slack's limit on a section's text; every message stays under it
# Member ids: U... for users, W... for Enterprise Grid users; real ids are 9-11 characters, so
# a short word like "U1" or "Ulrike" is a name, not an id.
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def escape(text: str) -> str:
    """Escape &, < and > so user text cannot form Slack mrkdwn control sequences."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def is_slack_user(owner: str) -> bool:
    """Whether an owner is a Slack member id (launched from Slack) rather than a CLI login name."""
    return SLACK_USER_ID.fullmatch(owner) is not None


def mention(owner: str) -> str:
    """`<@U123>` for a Slack member id, else the owner's escaped plain name."""
    return f"<@{owner}>" if is_slack_user(owner) else escape(owner)
