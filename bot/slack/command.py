"""`/experiment`'s ack: the launch form opens at once, a launch line is checked, the rest runs later."""
from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.container import Expbot
from bot.slack import slash
from bot.slack.listeners import Deps, user_facing
from bot.slack.modals import launch_modal
from bot.slack.mrkdwn import escape
from bot.slack.pieces import error_text
from bot.slack.replies import help_blocks
from core.errors import SpecError
from core.grammar import parse_launch
from core.handlers import capacity_problem
from core.spec import LaunchRequest

log = logging.getLogger(__name__)


def register_experiment_command(app: App, deps: Deps, handlers: slash.SlashCommands) -> None:
    """`/experiment`: ack within Slack's 3 s with what can be told at once; the subcommand runs after."""
    bot, later = deps.bot, deps.later
    opener = _trigger_client(deps.client)
    run_command = user_facing(handlers.run)

    def ack_experiment(ack, body, client: WebClient, respond, request: BoltRequest) -> None:
        sub, rest = slash.split_subcommand(body.get("text", ""))
        if sub == "launch" and not rest:
            _open_launch_form(ack, opener, bot, body)
        elif sub == "launch":
            launch = _ack_launch(ack, rest, bot, redelivered(request))
            if launch is not None:
                later(run_command, respond=respond, body=body, client=client, request=launch)
        elif sub in slash.SUBCOMMANDS:
            ack()
            later(run_command, respond=respond, body=body, client=client)
        else:
            text, blocks = help_blocks(
                slash.USAGE, unknown=sub or None, suggestion=slash.closest_subcommand(sub) if sub else None
            )
            ack(text=text, blocks=blocks)

    app.command("/experiment")(ack_experiment)


def _ack_launch(ack, text: str, bot: Expbot, again: bool) -> LaunchRequest | None:
    """Check a launch line as far as is cheap and answer in the ack: its refusal, or what is launched."""
    try:
        launch = parse_launch(text, bot.launch_config)
    except SpecError as e:
        ack(text=error_text(str(e)))
        return None
    # More GPUs than exist is known now (static capacity, no I/O): say so rather than "Launching".
    if (problem := capacity_problem(launch.specs, bot.backend)) is not None:
        ack(text=error_text(problem))
        return None
    if again:
        ack()  # the first delivery said "Launching"; the launch itself is idempotent per trigger id
    else:
        names = ", ".join(s.name for s in launch.specs[:5]) + ("…" if len(launch.specs) > 5 else "")
        ack(text=f":rocket: Launching {escape(names)}…")
    return launch


def redelivered(request: BoltRequest) -> bool:
    """Whether Slack is sending this request again (a retry carries X-Slack-Retry-Num)."""
    return bool(request.headers.get("x-slack-retry-num"))


def _open_launch_form(ack, opener: WebClient, bot: Expbot, body: dict) -> None:
    # The trigger id lives 3 s: open the modal before anything else, with one short try so
    # that the ack still comes in time when Slack is slow or rate-limits views.open.
    config = bot.launch_config
    view = launch_modal(list(config.gpu_catalog), list(config.projects), config,
                        private_metadata=body.get("channel_id", ""))
    try:
        opener.views_open(trigger_id=body["trigger_id"], view=view)
    except (SlackApiError, OSError) as e:  # OSError: a timeout or a dropped connection
        log.warning("could not open the launch form: %s",
                    e.response.get("error") if isinstance(e, SlackApiError) else repr(e))
        ack(text=error_text("Slack would not open the launch form in time; please try again."))
        return
    ack()


def _trigger_client(client: WebClient) -> WebClient:
    """The app's client for views.open on a trigger: one try, short timeout (the trigger lives 3 s)."""
    return WebClient(token=client.token, base_url=client.base_url, timeout=1.5, ssl=client.ssl,
                     proxy=client.proxy, headers=dict(client.headers), retry_handlers=[])
