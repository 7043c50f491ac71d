"""The Bolt app factory: listeners ack at once; slow work runs on a background pool after the ack."""
from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.container import Expbot
from bot.slack import blocks, slash
from bot.slack.approvals import register_approval_actions
from bot.slack.auth import Admins
from bot.slack.dedupe import SeenEvents, dedupe_middleware
from bot.slack.home import app_home
from bot.slack.idle import register_idle_actions
from bot.slack.ids import ActionId, CallbackId
from bot.slack.listeners import ack_then, background_runner, user_facing
from bot.slack.modals import launch_modal, launch_text_from_modal, modal_errors
from bot.slack.mrkdwn import escape
from bot.slack.slash import stop_text
from core import commands
from core.budget import month_window
from core.errors import ExpbotError, OptionError, SpecError
from core.grammar import parse_launch
from core.handlers import preflight
from core.model import ACTIVE, TERMINAL

log = logging.getLogger(__name__)


def create_app(bot: Expbot, client: WebClient, *, socket_mode: bool = False) -> App:
    """Build the Slack app for one expbot (HTTP requests verified by signing secret unless Socket Mode)."""
    settings = bot.settings
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    if not socket_mode and not secret:
        raise ExpbotError("EXPBOT_SLACK_SIGNING_SECRET is required to serve Slack over HTTP")
    # Bolt runs ack functions and lazy listeners on one small pool, so a burst of launches would
    # make later acks wait: acks get Bolt's pool to themselves, slow work goes to `background`.
    app = App(
        client=client,
        signing_secret=secret,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=False,  # no Web API call at start-up; auth errors surface on use
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="slack-ack"),
    )
    later = background_runner()

    admins = Admins(client, settings.slack_admin_ids(), settings.slack_admin_group)
    approvers = Admins(client, settings.slack_approver_ids(), settings.slack_approver_group)
    app.middleware(dedupe_middleware(SeenEvents()))
    handlers = slash.SlashCommands(bot, admins)
    opener = _trigger_client(client)

    # --- /experiment -----------------------------------------------------------------------------
    def ack_experiment(ack, body, client: WebClient, respond) -> None:
        sub, rest = slash.split_subcommand(body.get("text", ""))
        if sub == "launch" and not rest:
            # The trigger id lives 3 s: open the modal before anything else, with one short try so
            # that the ack still comes in time when Slack is slow or rate-limits views.open.
            try:
                opener.views_open(trigger_id=body["trigger_id"], view=_modal(bot, body.get("channel_id", "")))
            except (SlackApiError, OSError) as e:  # OSError: a timeout or a dropped connection
                log.warning("could not open the launch form: %s",
                            e.response.get("error") if isinstance(e, SlackApiError) else repr(e))
                ack(text=blocks.error_text("Slack would not open the launch form in time; please try again."))
                return
            ack()
        elif sub == "launch":
            try:
                request = parse_launch(rest, bot.launch_config)
            except SpecError as e:
                ack(text=blocks.error_text(str(e)))
                return
            names = ", ".join(s.name for s in request.specs[:5]) + ("…" if len(request.specs) > 5 else "")
            ack(text=f":rocket: Launching {escape(names)}…")
            later(run_command, respond=respond, body=body, client=client)
        elif sub in slash.SUBCOMMANDS:
            ack()
            later(run_command, respond=respond, body=body, client=client)
        else:
            text, help_blocks = blocks.help_blocks(
                slash.USAGE, unknown=sub or None, suggestion=slash.closest_subcommand(sub) if sub else None
            )
            ack(text=text, blocks=help_blocks)

    run_command = user_facing(handlers.run)
    app.command("/experiment")(ack_experiment)

    # --- launch modal ----------------------------------------------------------------------------
    def ack_launch_modal(ack, body, view, client: WebClient) -> None:
        # Everything that can be told on a field is checked before the ack, so the modal stays
        # open with what the user typed; the launch itself (and its races) happens after.
        try:
            request = parse_launch(launch_text_from_modal(view["state"]["values"]), bot.launch_config)
            with bot.uow_factory() as uow:
                preflight(uow, request.specs, backend=bot.backend, idempotency_key=f"view:{view['id']}")
        except OptionError as e:
            ack(response_action="errors", errors=modal_errors(e))
            return
        except Exception:
            # Only an early check: the launch after the ack checks again and reports to the user.
            log.exception("could not check the launch form before closing it")
        ack()
        later(launch_from_modal, body=body, view=view, client=client)

    def launch_from_modal(body, view, client: WebClient) -> None:
        user = body["user"]["id"]
        channel = view.get("private_metadata") or None
        try:
            result = bot.bus.handle(commands.LaunchExperiment(
                text=launch_text_from_modal(view["state"]["values"]), owner=user,
                idempotency_key=f"view:{view['id']}", channel=channel,
            ))
        except ExpbotError as e:
            _tell(client, user, channel, blocks.error_text(str(e)))
            return
        if not result.duplicate:
            _tell(client, user, channel, slash.launched_text(result.experiments))

    app.view(CallbackId.LAUNCH_MODAL.value)(ack_launch_modal)

    # --- buttons ---------------------------------------------------------------------------------
    def stop_pressed(respond, body, action, client: WebClient) -> None:
        name = action.get("value") or (action.get("selected_option") or {}).get("value", "")
        user = body["user"]["id"]
        exp = bot.bus.handle(commands.StopExperiment(name=name, by=user, as_admin=admins.is_admin(user)))
        respond(text=stop_text(exp), response_type="ephemeral", replace_original=False)

    def logs_pressed(respond, body, action, client: WebClient) -> None:
        handlers.send_logs(respond, client, body["user"]["id"], action["value"], attempt=None)

    app.action(ActionId.STOP.value)(ack_then(later, stop_pressed))
    app.action(ActionId.STOP_MEMBER.value)(ack_then(later, stop_pressed))
    app.action(ActionId.LOGS.value)(ack_then(later, logs_pressed))

    register_approval_actions(app, bot, approvers, later)
    register_idle_actions(app, bot, admins, later, keep_options=bot.idle_config.keep_options)

    # --- App Home --------------------------------------------------------------------------------
    @app.event("app_home_opened")
    def home_opened(event, client: WebClient) -> None:
        user = event["user"]
        now = bot.clock.now()
        start, end, month = month_window(now, bot.budgets.timezone)
        with bot.uow_factory() as uow:
            active = uow.experiments.list(states=ACTIVE, owner=user, limit=50)
            recent = uow.experiments.list(states=TERMINAL, owner=user, limit=20)
            spent = uow.costs.spent(start=start, end=end, now=now, owner=user)
        spend = f"You have spent *{bot.prices.format(spent)}* on GPUs in {month}."
        client.views_publish(user_id=user, view=app_home(active, recent, now, spend_text=spend))

    @app.error
    def on_error(error: Exception, body: dict, logger, respond) -> None:
        error_id = uuid.uuid4().hex[:8]
        logger.error("error %s handling a Slack request", error_id, exc_info=error)
        if respond is not None and isinstance(body, dict) and body.get("response_url"):
            respond(text=blocks.error_text("Something went wrong on expbot's side.", error_id),
                    response_type="ephemeral", replace_original=False)

    return app


def _modal(bot: Expbot, channel: str):
    config = bot.launch_config
    return launch_modal(list(config.gpu_catalog), list(config.projects), config, private_metadata=channel)


def _trigger_client(client: WebClient) -> WebClient:
    """The app's client for views.open on a trigger: one try, short timeout (the trigger lives 3 s)."""
    return WebClient(token=client.token, base_url=client.base_url, timeout=1.5, ssl=client.ssl,
                     proxy=client.proxy, headers=dict(client.headers), retry_handlers=[])


def _tell(client: WebClient, user: str, channel: str | None, text: str) -> None:
    """An ephemeral note in the channel the user launched from, else a DM."""
    if channel:
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
            return
        except Exception:
            log.info("could not post ephemerally in %s; sending a DM instead", channel)
    dm = client.conversations_open(users=user)["channel"]["id"]
    client.chat_postMessage(channel=dm, text=text)
