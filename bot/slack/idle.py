"""Idle-GPU warnings in Slack: the owner's DM with Keep / Stop buttons, and what pressing them does."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from adapters.slack_client import is_slack_user
from bot.slack.blocks import SECTION_LIMIT, error_text
from bot.slack.mrkdwn import escape, mention, truncate
from bot.slack.listeners import Later, ack_then
from bot.slack.slash import stop_text
from core import commands
from core.commands import KeepExperiment
from core.events import IdleWarning

log = logging.getLogger(__name__)

DEFAULT_KEEP = (timedelta(hours=2), timedelta(hours=24))


class IdleActionId(StrEnum):
    """Buttons of an idle warning (value: the experiment name); Keep ids follow keep_action_id()."""

    KEEP_2H = "idle_keep_2h"
    KEEP_24H = "idle_keep_24h"
    STOP = "idle_stop"


KEEP_ACTION = re.compile(r"^idle_keep_(\d+(?:\.\d+)?)h$")


def keep_action_id(keep: timedelta) -> str:
    """"idle_keep_2h" for 2 hours: the hours are in the id, so configured options need no new code."""
    return f"idle_keep_{keep.total_seconds() / 3600:g}h"


def _hours_label(keep: timedelta) -> str:
    return f"Keep {keep.total_seconds() / 3600:g}h"


def idle_warning_blocks(
    event: IdleWarning,
    grace: timedelta | None = None,
    keep_options: Sequence[timedelta] = DEFAULT_KEEP,
    thread_link: str | None = None,
) -> tuple[str, list[Block]]:
    """The owner's DM: how long the GPUs have idled, what happens next, and Keep / Stop buttons."""
    name = escape(event.experiment_name)
    minutes = int(grace.total_seconds() // 60) if grace is not None else event.grace_minutes
    then = (f"Without an answer it is *stopped in {minutes} min*." if event.auto_stop
            else "It keeps running until you stop it.")
    where = f" (<{thread_link}|its thread>)" if thread_link else ""
    text = truncate(
        f":zzz: {mention(event.owner)} every GPU of *{name}*{where} has been idle for "
        f"{event.idle_minutes} min. Keep it running, or stop it? {then}",
        SECTION_LIMIT,
    )
    buttons = [
        ButtonElement(text=_hours_label(keep), action_id=keep_action_id(keep), value=event.experiment_name)
        for keep in keep_options
    ]
    buttons.append(ButtonElement(
        text="Stop now", action_id=IdleActionId.STOP.value, value=event.experiment_name, style="danger",
        confirm=ConfirmObject(
            title=truncate(f"Stop {event.experiment_name}?", 100),
            text=truncate(f"Stop *{name}*? Its current attempt is killed and it is not restarted.", 300),
            confirm="Stop", deny="Cancel", style="danger",
        ),
    ))
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=text)),
        ActionsBlock(block_id="idle_actions", elements=buttons),
        ContextBlock(elements=[MarkdownTextObject(
            text="Only the owner or an admin can answer. Keep pauses these warnings; idle time still counts as waste.")]),
    ]
    return text, blocks


def idle_warning_delivery(
    client: WebClient,
    event: IdleWarning,
    thread: tuple[str, str] | None = None,
    keep_options: Sequence[timedelta] = DEFAULT_KEEP,
) -> tuple[str, str] | None:
    """DM the owner the warning (linking the experiment's thread when known); (channel, ts), or None for CLI owners."""
    if not is_slack_user(event.owner):
        return None  # launched from the CLI: the thread reply is all there is
    link = None
    if thread is not None:
        try:
            link = client.chat_getPermalink(channel=thread[0], message_ts=thread[1])["permalink"]
        except SlackApiError as e:  # the DM matters more than its link
            log.info("no permalink for %s's thread: %s", event.experiment_name, e.response.get("error"))
    dm = client.conversations_open(users=event.owner)["channel"]["id"]
    text, blocks = idle_warning_blocks(event, keep_options=keep_options, thread_link=link)
    response = client.chat_postMessage(channel=dm, text=text, blocks=blocks)
    return response["channel"], response["ts"]


def register_idle_actions(
    app: App, bot: Any, admins: Any, later: Later, keep_options: Sequence[timedelta] = DEFAULT_KEEP
) -> None:
    """Keep / Stop buttons of idle warnings: owner or admin only (others get an ephemeral refusal)."""
    allowed_hours = {round(k.total_seconds() / 3600, 6) for k in keep_options}

    def keep_pressed(respond, body, action, client: WebClient) -> None:
        match = KEEP_ACTION.match(action.get("action_id", ""))
        hours = float(match.group(1)) if match else 0.0
        if round(hours, 6) not in allowed_hours:  # a forged or outdated button
            respond(text=error_text(f"Keep for {hours:g}h is not an option here."), response_type="ephemeral",
                    replace_original=False)
            return
        user = body["user"]["id"]
        kept = bot.bus.handle(KeepExperiment(
            name=action.get("value", ""), by=user, as_admin=admins.is_admin(user), hours=hours))
        respond(text=f":zzz: Keeping *{escape(kept.experiment_name)}* running: no idle warning before "
                     f"{_slack_time(kept.until)}.", response_type="ephemeral", replace_original=False)

    def stop_pressed(respond, body, action, client: WebClient) -> None:
        user = body["user"]["id"]
        exp = bot.bus.handle(commands.StopExperiment(
            name=action.get("value", ""), by=user, as_admin=admins.is_admin(user),
            reason=f"stopped by {user} after an idle-GPU warning",
        ))
        respond(text=stop_text(exp), response_type="ephemeral", replace_original=False)

    app.action(KEEP_ACTION)(ack_then(later, keep_pressed))
    app.action(IdleActionId.STOP.value)(ack_then(later, stop_pressed))


def _slack_time(at: datetime) -> str:
    """Shown in the reader's own time zone; the UTC text is the fallback."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"
