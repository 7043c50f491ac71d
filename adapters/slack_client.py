"""Slack's Web API: a retrying WebClient, and the notifier that turns events into threads."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from adapters.db.slack_threads import SlackThreads
from core import events as ev
from core.messages import describe
from core.model import Experiment
from core.ports import Clock, UnitOfWork

log = logging.getLogger(__name__)

Rendered = tuple[str, Sequence[Any]]  # fallback text, Block Kit blocks
ParentRenderer = Callable[[list[Experiment], datetime], Rendered]
ReplyRenderer = Callable[[ev.Event, str], Rendered]

# Errors that no retry can fix: the event is logged and dropped rather than blocking the outbox.
_PERMANENT = frozenset({
    "invalid_blocks", "invalid_arguments", "msg_too_long", "no_text", "message_not_found",
    "cant_update_message", "edit_window_closed", "user_not_found", "users_not_found",
    "cannot_dm_bot", "not_authed", "invalid_auth", "account_inactive", "token_revoked",
    "missing_scope", "restricted_action",
})
# Errors that mean "this channel will not take the message": fall back to another place.
_CHANNEL_REFUSED = frozenset({"not_in_channel", "channel_not_found", "is_archived"})
_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]+$")


def make_web_client(token: str, base_url: str | None = None) -> WebClient:
    """A WebClient that retries 429s (honouring Retry-After), 5xx and dropped connections."""
    client = WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=15)
    client.retry_handlers.extend([
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
        ConnectionErrorRetryHandler(max_retry_count=2),
    ])
    return client


def is_slack_user(owner: str) -> bool:
    """Whether an owner is a Slack user id (launched from Slack) rather than a CLI login name."""
    return bool(_SLACK_USER_ID.match(owner))


class SlackNotifier:
    """core.ports.Notifier: one parent message per launch, edited in place; events as thread replies."""

    # Shown in the parent message only: these would be noise as replies.
    _PARENT_ONLY = (ev.ExperimentLaunched, ev.AttemptRunning)

    def __init__(
        self,
        client: WebClient,
        uow_factory: Callable[[], UnitOfWork],
        threads: SlackThreads,
        clock: Clock,
        render_parent: ParentRenderer,
        render_reply: ReplyRenderer,
        default_channel: str | None = None,
        approvals_channel: str | None = None,
        render_approval: Callable[[ev.ApprovalRequested], Rendered] | None = None,
        render_decision: Callable[[ev.ApprovalRequested, ev.Event], Rendered] | None = None,
        deliver_idle_warning: Callable[[WebClient, ev.IdleWarning, tuple[str, str]], object] | None = None,
        ops_channel: str | None = None,
    ) -> None:
        self.client = client
        self.uow_factory = uow_factory
        self.threads = threads
        self.clock = clock
        self.render_parent = render_parent
        self.render_reply = render_reply
        self.default_channel = default_channel
        self.approvals_channel = approvals_channel or default_channel
        self.render_approval = render_approval
        self.render_decision = render_decision
        self.deliver_idle_warning = deliver_idle_warning
        self.ops_channel = ops_channel or default_channel

    def notify(self, event: ev.Event) -> None:
        """Deliver one event: post or edit the parent, reply in its thread (permanent errors dropped)."""
        try:
            self._deliver(event)
        except SlackApiError as e:
            error = e.response.get("error", "")
            if error not in _PERMANENT:
                raise  # transient: the relay keeps the event and tries again later
            log.error("dropping %s for %s: Slack refused it (%s)", event.kind, event.experiment_name, error)

    def _deliver(self, event: ev.Event) -> None:
        if isinstance(event, ev.NodeUnhealthy):
            self._report_node(event)  # for operations, not for the experiment's thread
            return
        with self.uow_factory() as uow:
            experiment = uow.experiments.get(event.experiment_id)
            if experiment is None:
                return
            members = uow.experiments.by_launch(experiment.launch_id)
        now = self.clock.now()
        thread = self.threads.get(experiment.launch_id)
        if thread is None:
            thread = self._post_parent(experiment, members, now)
            if thread is None:
                return  # nowhere to post (a CLI launch and no default channel)
            posted_now = True
        else:
            posted_now = False
        channel, ts = thread
        if not self._is_parent_only(event):
            text, blocks = self.render_reply(event, experiment.owner)
            self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text, blocks=blocks)
        if not posted_now:
            text, blocks = self.render_parent(members, now)
            self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        if isinstance(event, ev.ApprovalRequested):
            self._ask_approvers(event, now)
        elif isinstance(event, (ev.LaunchApproved, ev.LaunchDenied)):
            self._show_decision(experiment, event)
        elif isinstance(event, ev.IdleWarning) and self.deliver_idle_warning is not None:
            self.deliver_idle_warning(self.client, event, (channel, ts))  # the owner's DM, with Keep / Stop

    def _report_node(self, event: ev.NodeUnhealthy) -> None:
        key = f"node:{event.event_id}"
        if not self.ops_channel:
            log.warning("%s (no operations channel is configured)", describe(event))
            return
        if self.threads.get(key) is not None:
            return  # a redelivery: already posted
        text, blocks = self.render_reply(event, "")
        response = self.client.chat_postMessage(channel=self.ops_channel, text=text, blocks=blocks)
        self.threads.save(key, response["channel"], response["ts"], self.clock.now())

    def _ask_approvers(self, request: ev.ApprovalRequested, now: datetime) -> None:
        if self.render_approval is None or not self.approvals_channel:
            log.warning("%s needs approval but no approvals channel is configured", request.experiment_name)
            return
        key = f"approval:{request.launch_id}"
        if self.threads.get(key) is not None:
            return  # a redelivery: the request is already posted
        text, blocks = self.render_approval(request)
        response = self.client.chat_postMessage(channel=self.approvals_channel, text=text, blocks=blocks)
        self.threads.save(key, response["channel"], response["ts"], now)

    def _show_decision(self, experiment: Experiment, decision: ev.Event) -> None:
        posted = self.threads.get(f"approval:{experiment.launch_id}")
        if posted is None or self.render_decision is None:
            return
        with self.uow_factory() as uow:
            members = uow.experiments.by_launch(experiment.launch_id)
            request = next((e for m in members for e in uow.outbox.for_experiment(m.id)
                            if isinstance(e, ev.ApprovalRequested)), None)
        if request is None:
            return
        text, blocks = self.render_decision(request, decision)
        self.client.chat_update(channel=posted[0], ts=posted[1], text=text, blocks=blocks)

    def _is_parent_only(self, event: ev.Event) -> bool:
        if isinstance(event, self._PARENT_ONLY):
            return True
        # A successful or stopped attempt is told by ExperimentSucceeded / ExperimentStopped.
        return isinstance(event, ev.AttemptEnded) and event.failure_class in ("none", "stopped")

    def _post_parent(self, experiment: Experiment, members: list[Experiment], now: datetime) -> tuple[str, str] | None:
        text, blocks = self.render_parent(members, now)
        for channel in self._channels_for(experiment):
            try:
                response = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            except SlackApiError as e:
                if e.response.get("error") in _CHANNEL_REFUSED:
                    log.warning("channel %s refused the thread of %s; trying the next place", channel, experiment.name)
                    continue
                raise
            return self.threads.save(experiment.launch_id, response["channel"], response["ts"], now)
        return None

    def _channels_for(self, experiment: Experiment):
        """Where a parent may go, in order: its channel, the default channel, the owner's DM."""
        for channel in (experiment.channel, self.default_channel):
            if channel:
                yield channel
        if is_slack_user(experiment.owner):
            yield self.client.conversations_open(users=experiment.owner)["channel"]["id"]
