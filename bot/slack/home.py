"""The App Home tab: a user's running and recent experiments, and optionally their spend."""
from __future__ import annotations

from datetime import datetime

from slack_bolt import App
from slack_sdk import WebClient

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.slack.pieces import attempts_text, gpus_text, reason_text, runtime_text, state_label, stop_button
from bot.slack.listeners import Deps
from bot.slack.mrkdwn import date_token, escape, from_core, truncate
from core.budget import month_window
from core.durations import format_duration
from core.model import ACTIVE, TERMINAL, Experiment

MAX_VIEW_BLOCKS = 100
HOME_ACTIVE = 50
HOME_RECENT = 35


def _section(text: str, **kwargs: object) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, 3000)), **kwargs)


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _active(exp: Experiment, now: datetime) -> SectionBlock:
    text = (f"*{escape(exp.name)}*  {state_label(exp.state)} · {escape(gpus_text(exp))} · "
            f"{attempts_text(len(exp.attempts))} · {runtime_text(exp, now)} · "
            f"{escape(exp.spec.project)}")
    if reason_text(exp):
        text += f"\n_{truncate(from_core(reason_text(exp)), 500)}_"
    accessory = None if exp.is_terminal else stop_button(exp.name)
    return _section(text, accessory=accessory)


def _recent(exp: Experiment, now: datetime) -> SectionBlock:
    ended = exp.updated_at or exp.created_at
    text = (f"*{escape(exp.name)}*  {state_label(exp.state)} · ran "
            f"{format_duration(exp.runtime(now))} · ended {date_token(ended, '{ago}')}")
    if reason_text(exp):
        text += f"\n_{truncate(from_core(reason_text(exp)), 500)}_"
    return _section(text)


def app_home(
    user_active: list[Experiment], user_recent: list[Experiment], now: datetime,
    spend_text: str | None = None,
) -> View:
    """The Home tab view (type home), within Slack's 100 blocks."""
    blocks: list[Block] = [HeaderBlock(text="Your experiments"),
                           _section("*Running and queued*")]
    blocks += [_active(exp, now) for exp in user_active[:HOME_ACTIVE]]
    if not user_active:
        blocks.append(_context("Nothing running. Start one with `/experiment launch`."))
    elif len(user_active) > HOME_ACTIVE:
        blocks.append(_context(f"…and {len(user_active) - HOME_ACTIVE} more"))
    blocks += [DividerBlock(), _section("*Recently finished*")]
    blocks += [_recent(exp, now) for exp in user_recent[:HOME_RECENT]]
    if not user_recent:
        blocks.append(_context("Nothing finished recently."))
    elif len(user_recent) > HOME_RECENT:
        blocks.append(_context(f"…and {len(user_recent) - HOME_RECENT} more"))
    if spend_text:
        blocks += [DividerBlock(), _section(f"*Month-to-date spend*\n{escape(spend_text)}")]
    return View(type="home", blocks=blocks)


def register_app_home(app: App, deps: Deps) -> None:
    """Publish the Home tab whenever a user opens it."""
    bot = deps.bot

    def home_opened(event, client: WebClient) -> None:
        deps.later(publish_home, user=event["user"], client=client)  # the event is acked when this returns

    def publish_home(user: str, client: WebClient) -> None:
        now = bot.clock.now()
        start, end, month = month_window(now, bot.budgets.timezone)
        with bot.uow_factory() as uow:
            active = uow.experiments.list(states=ACTIVE, owner=user, limit=50)
            recent = uow.experiments.list(states=TERMINAL, owner=user, limit=20)
            spent = uow.costs.spent(start=start, end=end, now=now, owner=user)
        spend = f"You have spent *{bot.prices.format(spent)}* on GPUs in {month}."
        client.views_publish(user_id=user, view=app_home(active, recent, now, spend_text=spend))

    app.event("app_home_opened")(home_opened)
