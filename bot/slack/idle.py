"""Idle-GPU warnings in Slack: the owner's DM with Keep / Stop buttons, and what pressing them does."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

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

from bot.slack.auth import verified
from bot.slack.ids import IDLE_KEEP, ActionId, MessageBlockId, keep_action_id
from bot.slack.listeners import Deps, ack_then
from bot.slack.mrkdwn import SECTION_LIMIT, date_token, escape, is_slack_user, mention, truncate
from bot.slack.pieces import error_text
from core.commands import KeepExperiment
from core.durations import format_duration
from core.events import IdleWarning

log = logging.getLogger(__name__)

DEFAULT_KEEP = (timedelta(hours=2), timedelta(hours=24))


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
    then = (f"Without an answer it is *stopped in {format_duration(minutes * 60)}*." if event.auto_stop
            else "It keeps running until you stop it.")
    where = f" (<{thread_link}|its thread>)" if thread_link else ""
    text = truncate(
        f":zzz: {mention(event.owner)} every GPU of *{name}*{where} has been idle for "
        f"{format_duration(event.idle_minutes * 60)}. Keep it running, or stop it? {then}",
        SECTION_LIMIT,
    )
    buttons = [
        ButtonElement(text=_hours_label(keep), action_id=keep_action_id(keep), value=event.experiment_name)
        for keep in keep_options
    ]
    buttons.append(ButtonElement(
        text="Stop now", action_id=ActionId.IDLE_STOP.value, value=event.experiment_name, style="danger",
        confirm=ConfirmObject(
            title=truncate(f"Stop {event.experiment_name}?", 100),
            text=truncate(f"Stop *{name}*? Its current attempt is killed and it is not restarted.", 300),
            confirm="Stop", deny="Cancel", style="danger",
        ),
    ))
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=text)),
        ActionsBlock(block_id=MessageBlockId.IDLE_ACTIONS.value, elements=buttons),
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


def register_idle_actions(app: App, deps: Deps) -> None:
    """Keep buttons of idle warnings: the owner or an admin (verified by middleware); Stop is buttons.py's."""
    bot = deps.bot
    allowed_hours = {round(k.total_seconds() / 3600, 6) for k in bot.idle_config.keep_options}

    def keep_pressed(respond, body, action, client: WebClient, context) -> None:
        match = IDLE_KEEP.match(action.get("action_id", ""))
        hours = float(match.group(1)) if match else 0.0
        if round(hours, 6) not in allowed_hours:  # a forged or outdated button
            respond(text=error_text(f"Keep for {hours:g}h is not an option here."), response_type="ephemeral",
                    replace_original=False)
            return
        user = body["user"]["id"]
        kept = bot.bus.handle(KeepExperiment(
            name=action.get("value", ""), by=user, as_admin=context["as_admin"], hours=hours))
        respond(text=f":zzz: Keeping *{escape(kept.experiment_name)}* running: no idle warning before "
                     f"{date_token(kept.until, '{date_short_pretty} {time}')}.", response_type="ephemeral",
                replace_original=False)

    app.action(IDLE_KEEP, middleware=[verified("as_admin", deps.admins)])(ack_then(deps.later, keep_pressed))
