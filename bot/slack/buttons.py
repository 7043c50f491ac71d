"""The buttons on expbot's messages: Stop (parent, sweep member, idle warning) and Logs."""
from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot.slack.auth import verified
from bot.slack.ids import ActionId
from bot.slack.listeners import Deps, ack_then
from bot.slack.slash import SlashCommands, stop_text
from core import commands

# Every Stop an experiment's messages carry: its parent, a sweep's member menu, an idle warning.
STOP_ACTIONS = (ActionId.STOP, ActionId.STOP_MEMBER, ActionId.IDLE_STOP)


def register_buttons(app: App, deps: Deps, handlers: SlashCommands) -> None:
    """Stop buttons (the owner or an admin may stop: verified by middleware) and the Logs button."""
    bot = deps.bot

    def stop_pressed(respond, body, action, client: WebClient, context) -> None:
        name = action.get("value") or (action.get("selected_option") or {}).get("value", "")
        user = body["user"]["id"]
        reason = {"reason": f"stopped by {user} after an idle-GPU warning"} \
            if action.get("action_id") == ActionId.IDLE_STOP else {}
        exp = bot.bus.handle(commands.StopExperiment(name=name, by=user, as_admin=context["as_admin"], **reason))
        respond(text=stop_text(exp), response_type="ephemeral", replace_original=False)

    def logs_pressed(respond, body, action, client: WebClient, context) -> None:
        handlers.send_logs(respond, client, body["user"]["id"], action["value"], attempt=None)

    may_stop = [verified("as_admin", deps.admins)]
    for action_id in STOP_ACTIONS:
        app.action(action_id.value, middleware=may_stop)(ack_then(deps.later, stop_pressed))
    app.action(ActionId.LOGS.value)(ack_then(deps.later, logs_pressed))
