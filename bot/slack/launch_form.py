"""The launch form's submission: fields checked before the ack, the launch itself after it."""
from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient

from bot.slack.ids import CallbackId
from bot.slack.listeners import Deps
from bot.slack.modals import launch_text_from_modal, modal_errors
from bot.slack.pieces import error_text
from bot.slack.slash import launched_text
from core import commands
from core.errors import ExpbotError, OptionError
from core.grammar import parse_launch
from core.spec import LaunchRequest
from core.handlers import preflight

log = logging.getLogger(__name__)


def register_launch_form(app: App, deps: Deps) -> None:
    """The launch modal: errors on its fields keep it open; the launch is told ephemerally (or by DM)."""
    bot, later = deps.bot, deps.later

    def ack_launch_modal(ack, body, view, client: WebClient) -> None:
        # Everything that can be told on a field is checked before the ack, so the modal stays
        # open with what the user typed; the launch itself (and its races) happens after.
        request = None
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
        later(launch_from_modal, body=body, view=view, client=client, request=request)

    def launch_from_modal(body, view, client: WebClient, request: LaunchRequest | None = None) -> None:
        user = body["user"]["id"]
        channel = view.get("private_metadata") or None
        try:
            result = bot.bus.handle(commands.LaunchExperiment(
                text=launch_text_from_modal(view["state"]["values"]), owner=user,
                idempotency_key=f"view:{view['id']}", channel=channel, request=request,
            ))
        except ExpbotError as e:
            _tell(client, user, channel, error_text(str(e)))
            return
        if not result.duplicate:
            _tell(client, user, channel, launched_text(result.experiments))

    app.view(CallbackId.LAUNCH_MODAL.value)(ack_launch_modal)


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
