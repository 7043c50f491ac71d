"""Approval requests in Slack: Approve/Deny buttons for budget approvers, and their decisions."""
from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.slack.auth import verified
from bot.slack.ids import ActionId, MessageBlockId
from bot.slack.listeners import Deps, ack_then
from bot.slack.mrkdwn import date_token, escape, mention, truncate
from core import commands
from core import events as ev
from core.messages import money


def request_blocks(event: ev.ApprovalRequested) -> tuple[str, list[Any]]:
    """The request approvers see: who, what, the numbers, and Approve / Deny."""
    lines = [
        f"{mention(event.owner)} wants to launch *{escape(event.experiment_name)}*, projected to cost up to "
        f"*{money(event.projected_cost, event.currency)}*, which would overrun:"
    ]
    for b in event.budgets:
        lines.append(
            f"• {b['scope']} {_budget_name(b['scope'], b['name'])}: {money(b['spent'], event.currency)} spent this month + "
            f"{money(b['committed'], event.currency)} committed to running experiments, "
            f"of {money(b['limit'], event.currency)}"
        )
    text = truncate("\n".join(lines), 2900)
    confirm = ConfirmObject(
        title="Approve this launch?", text=f"It may cost up to {money(event.projected_cost, event.currency)}.",
        confirm="Approve", deny="Cancel",
    )
    buttons = ActionsBlock(block_id=MessageBlockId.APPROVAL.value, elements=[
        ButtonElement(text="Approve", action_id=ActionId.APPROVE.value, value=event.launch_id, style="primary",
                      confirm=confirm),
        ButtonElement(text="Deny", action_id=ActionId.DENY.value, value=event.launch_id, style="danger"),
    ])
    expires = date_token(event.expires_at, "{date_short_pretty} {time}")
    context = ContextBlock(elements=[MarkdownTextObject(text=f"Expires {expires} if nobody answers.")])
    fallback = f"Approval needed: {event.experiment_name} ({money(event.projected_cost, event.currency)})"
    return fallback, [SectionBlock(text=MarkdownTextObject(text=text)), buttons, context]


def _budget_name(scope: str, name: str) -> str:
    """A user's budget names a person (a mention); a project's is its name in bold."""
    return mention(name) if scope == "user" else f"*{escape(name)}*"


def decision_blocks(request: ev.ApprovalRequested, decision: ev.Event) -> tuple[str, list[Any]]:
    """The request after an approver (or the expiry) decided: the buttons give way to the decision."""
    fallback, blocks = request_blocks(request)
    if isinstance(decision, ev.LaunchApproved):
        outcome = f":white_check_mark: Approved by {mention(decision.by)}"
    else:
        who = "nobody answered in time" if decision.by == "expbot" else f"denied by {mention(decision.by)}"  # type: ignore[attr-defined]
        outcome = f":no_entry_sign: Not launched: {who}"
    return f"{fallback}: {outcome}", [blocks[0], ContextBlock(elements=[MarkdownTextObject(text=outcome)])]


def register_approval_actions(app: App, deps: Deps) -> None:
    """Approve / Deny buttons: whether the presser is an approver is verified by middleware; core refuses others."""
    bot = deps.bot

    def decide(respond, body, action, client: WebClient, context) -> None:
        user, allowed = body["user"]["id"], context["as_approver"]
        if action["action_id"] == ActionId.APPROVE:
            done = bot.bus.handle(commands.ApproveLaunch(launch_id=action["value"], by=user, as_approver=allowed))
            verb = "Approved"
        else:
            done = bot.bus.handle(commands.DenyLaunch(launch_id=action["value"], by=user, as_approver=allowed))
            verb = "Denied"
        name = done[0].spec.group or done[0].name
        respond(text=f"{verb} {escape(name)}.", response_type="ephemeral", replace_original=False)

    may_decide = [verified("as_approver", deps.approvers)]
    for action_id in (ActionId.APPROVE, ActionId.DENY):
        app.action(action_id.value, middleware=may_decide)(ack_then(deps.later, decide))
