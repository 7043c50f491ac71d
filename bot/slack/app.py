"""The Bolt app factory: listeners ack at once; slow work runs on a background pool after the ack.

Each group of listeners is registered by one function of its own module (Dispatch's layout); the
roles a group needs (who may stop, who may decide approvals) are verified by its middleware.
"""
from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot.container import Expbot
from bot.slack.approvals import register_approval_actions
from bot.slack.auth import Admins
from bot.slack.buttons import register_buttons
from bot.slack.command import register_experiment_command
from bot.slack.dedupe import SeenEvents, dedupe_middleware
from bot.slack.home import register_app_home
from bot.slack.idle import register_idle_actions
from bot.slack.launch_form import register_launch_form
from bot.slack.listeners import Deps, background_runner, register_error_handler
from bot.slack.slash import SlashCommands
from core.errors import ExpbotError


def create_app(bot: Expbot, client: WebClient, *, socket_mode: bool = False) -> App:
    """Build the Slack app for one expbot (HTTP requests verified by signing secret unless Socket Mode)."""
    settings = bot.settings
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    if not socket_mode and not secret:
        raise ExpbotError("EXPBOT_SLACK_SIGNING_SECRET is required to serve Slack over HTTP")
    # Listeners run in the request's own thread and answer as soon as they return: every listener
    # acks after cheap checks and hands slow work to `later`. Bolt's other mode runs each listener
    # on a second thread and polls for its ack every 10 ms: a thread hop and 5-10 ms on every ack,
    # far more under load (benchmarks/ack_latency.py).
    app = App(
        client=client,
        signing_secret=secret,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=False,  # no Web API call at start-up; auth errors surface on use
        process_before_response=True,
    )
    app.middleware(dedupe_middleware(SeenEvents()))
    deps = Deps(
        bot=bot, client=client, later=background_runner(),
        admins=Admins(client, settings.slack_admin_ids(), settings.slack_admin_group),
        approvers=Admins(client, settings.slack_approver_ids(), settings.slack_approver_group),
    )
    handlers = SlashCommands(bot, deps.admins)
    register_experiment_command(app, deps, handlers)
    register_launch_form(app, deps)
    register_buttons(app, deps, handlers)
    register_approval_actions(app, deps)
    register_idle_actions(app, deps)
    register_app_home(app, deps)
    register_error_handler(app)
    return app
