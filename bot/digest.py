"""The daily digest's wiring: the one DigestService bootstrap builds, and its rendering for a terminal."""
from __future__ import annotations

import functools
import html
import os
import re
import socket
from collections.abc import Callable
from datetime import date, time
from typing import Any

from sqlalchemy.orm import Session

from adapters.db.digest_queries import first_launch_at, open_digest_queries
from adapters.db.digest_runs import DigestRuns
from adapters.db.spend_days import SpendDays
from bot.config import Settings
from core.budget import PROJECT, BudgetConfig
from core.cost import Prices
from core.digest import Digest
from core.digest_ports import DigestPublisher
from core.digest_service import DigestService
from core.mrkdwn import SLACK_USER_ID
from core.ports import UnitOfWork


def digest_service(
    settings: Settings,
    session_factory: Callable[[], Session],
    uow_factory: Callable[[], UnitOfWork],
    prices: Prices,
    budgets: BudgetConfig,
    idle_states: Any,
    slack_client: Any = None,
) -> DigestService:
    """The digest service: the database behind its ports, posting to the digest channel when Slack has one."""
    return DigestService(
        open_queries=functools.partial(open_digest_queries, session_factory),
        prices=prices,
        timezone=budgets.timezone,
        budgets=functools.partial(project_budgets, uow_factory, budgets),
        history=SpendDays(session_factory),
        idle_gpu_hours=lambda since: idle_states.total_idle_gpu_hours(since=since),
        claims=DigestRuns(session_factory),
        publisher=slack_publisher(slack_client, settings.slack_digest_channel),
        draw_chart=draw_chart,
        replica=f"{socket.gethostname()}:{os.getpid()}",
        post_at=time.fromisoformat(settings.digest_time),
        catch_up_all=settings.digest_catch_up_all,
        began=functools.partial(first_launch_at, session_factory),
    )


def slack_publisher(client: Any, channel: str | None, **pacing: Any) -> DigestPublisher | None:
    """Posting to `channel` through a Slack Web API client; None without either."""
    if client is None or not channel:
        return None
    from adapters.slack_digest import post_digest  # slack_sdk loads only when Slack is configured

    return functools.partial(post_digest, client, channel, **pacing)


def draw_chart(series: dict[str, list[tuple[date, float]]], title: str, currency: str) -> bytes:
    """The digest's chart as PNG."""
    from adapters.digest_chart import spend_chart_png  # matplotlib loads only when a chart is drawn

    return spend_chart_png(series, title, currency)


def project_budgets(uow_factory: Callable[[], UnitOfWork], config: BudgetConfig) -> dict[str, float]:
    """Project budgets in force: configured ones, overridden by those admins set."""
    with uow_factory() as uow:
        overrides = uow.budgets.overrides()
    return {**config.projects, **{name: v for (scope, name), v in overrides.items() if scope == PROJECT}}


def render_for_terminal(digest: Digest) -> str:
    """The digest as plain text for a terminal (`expbot digest --dry-run`): mentions and escapes undone."""

    def plain(text: str) -> str:
        return html.unescape(re.sub(rf"<@({SLACK_USER_ID.pattern})>", r"@\1", text))

    sections = [plain(digest.parent_text)] + [plain(reply) for reply in digest.replies]
    return "\n\n".join([sections[0], "── thread ──", *sections[1:]]) + "\n"

