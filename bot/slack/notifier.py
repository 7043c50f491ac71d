"""core.ports.Notifier for Slack: one parent message per launch, edited in place; events as thread replies."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from adapters.db.slack_threads import SlackThreads
from bot.slack import approvals, blocks
from bot.slack.idle import DEFAULT_KEEP, idle_warning_delivery
from bot.slack.mrkdwn import is_slack_user
from core import events as ev
from core.messages import describe
from core.model import Experiment
from core.ports import Clock, UnitOfWork

log = logging.getLogger(__name__)

# Errors that no retry can fix: the event is logged and dropped rather than blocking the outbox.
_PERMANENT = frozenset({
    "invalid_blocks", "invalid_arguments", "msg_too_long", "no_text", "message_not_found",
    "cant_update_message", "edit_window_closed", "user_not_found", "users_not_found",
    "cannot_dm_bot", "not_authed", "invalid_auth", "account_inactive", "token_revoked",
    "missing_scope", "restricted_action",
})
# Errors that mean "this channel will not take the message": fall back to another place.
_CHANNEL_REFUSED = frozenset({"not_in_channel", "channel_not_found", "is_archived"})
# Shown in the parent message only: these would be noise as replies.
_PARENT_ONLY = (ev.ExperimentLaunched, ev.AttemptRunning)


class SlackNotifier:
    """core.ports.Notifier: one parent message per launch, edited in place; events as thread replies."""

    def __init__(
        self,
        client: WebClient,
        uow_factory: Callable[[], UnitOfWork],
        threads: SlackThreads,
        clock: Clock,
        *,
        currency: str = "USD",
        default_channel: str | None = None,
        approvals_channel: str | None = None,
        ops_channel: str | None = None,
        keep_options: Sequence[timedelta] = DEFAULT_KEEP,
    ) -> None:
        self.client = client
        self.uow_factory = uow_factory
        self.threads = threads
        self.clock = clock
        self.currency = currency
        self.default_channel = default_channel
        self.approvals_channel = approvals_channel or default_channel
        self.ops_channel = ops_channel or default_channel
        self.keep_options = keep_options

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
        posted_now = thread is None
        if thread is None:
            thread = self._post_parent(experiment, members, now)
            if thread is None:
                return  # nowhere to post (a CLI launch and no default channel)
        channel, ts = thread
        if not _is_parent_only(event):
            text, reply = blocks.thread_reply(event, experiment.owner)
            self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text, blocks=reply)
        if not posted_now:
            text, parent = blocks.experiment_parent(members, now, currency=self.currency)
            self.client.chat_update(channel=channel, ts=ts, text=text, blocks=parent)
        if isinstance(event, ev.ApprovalRequested):
            self._ask_approvers(event, now)
        elif isinstance(event, (ev.LaunchApproved, ev.LaunchDenied)):
            self._show_decision(experiment, event)
        elif isinstance(event, ev.IdleWarning):  # the owner's DM, with Keep / Stop
            idle_warning_delivery(self.client, event, (channel, ts), keep_options=self.keep_options)

    def _report_node(self, event: ev.NodeUnhealthy) -> None:
        key = f"node:{event.event_id}"
        if not self.ops_channel:
            log.warning("%s (no operations channel is configured)", describe(event))
            return
        if self.threads.get(key) is not None:
            return  # a redelivery: already posted
        text, reply = blocks.thread_reply(event, "")
        response = self.client.chat_postMessage(channel=self.ops_channel, text=text, blocks=reply)
        self.threads.save(key, response["channel"], response["ts"], self.clock.now())

    def _ask_approvers(self, request: ev.ApprovalRequested, now: datetime) -> None:
        if not self.approvals_channel:
            log.warning("%s needs approval but no approvals channel is configured", request.experiment_name)
            return
        key = f"approval:{request.launch_id}"
        if self.threads.get(key) is not None:
            return  # a redelivery: the request is already posted
        text, asked = approvals.request_blocks(request)
        response = self.client.chat_postMessage(channel=self.approvals_channel, text=text, blocks=asked)
        self.threads.save(key, response["channel"], response["ts"], now)

    def _show_decision(self, experiment: Experiment, decision: ev.Event) -> None:
        posted = self.threads.get(f"approval:{experiment.launch_id}")
        if posted is None:
            return
        with self.uow_factory() as uow:
            members = uow.experiments.by_launch(experiment.launch_id)
            request = next((e for m in members for e in uow.outbox.for_experiment(m.id)
                            if isinstance(e, ev.ApprovalRequested)), None)
        if request is None:
            return
        text, decided = approvals.decision_blocks(request, decision)
        self.client.chat_update(channel=posted[0], ts=posted[1], text=text, blocks=decided)

    def _post_parent(self, experiment: Experiment, members: list[Experiment], now: datetime) -> tuple[str, str] | None:
        text, parent = blocks.experiment_parent(members, now, currency=self.currency)
        for channel in self._channels_for(experiment):
            try:
                response = self.client.chat_postMessage(channel=channel, text=text, blocks=parent)
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


def _is_parent_only(event: ev.Event) -> bool:
    if isinstance(event, _PARENT_ONLY):
        return True
    # A successful or stopped attempt is told by ExperimentSucceeded / ExperimentStopped.
    return isinstance(event, ev.AttemptEnded) and event.failure_class in ("none", "stopped")
