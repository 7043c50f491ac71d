"""Who may do what in Slack: roles (configured user ids plus a user group), verified by middleware."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_bolt import BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class Admins:
    """Answers `is_admin(user)`; the user group's members are fetched at most every `ttl` seconds."""

    def __init__(self, client: WebClient, user_ids: frozenset[str], group: str | None, ttl: float = 300.0) -> None:
        self.client = client
        self.user_ids = user_ids
        self.group = group
        self.ttl = ttl
        self._members: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def is_admin(self, user_id: str) -> bool:
        """Whether this Slack user is an admin."""
        return user_id in self.user_ids or user_id in self._group_members()

    def _group_members(self) -> frozenset[str]:
        if not self.group:
            return frozenset()
        with self._lock:
            if time.monotonic() - self._fetched_at > self.ttl:
                try:
                    users = self.client.usergroups_users_list(usergroup=self.group)["users"]
                    self._members = frozenset(users)
                    self._fetched_at = time.monotonic()
                except SlackApiError as e:
                    # Keep the last known members: a Slack hiccup must not make everyone an admin
                    # (nor lock real admins out for longer than one call).
                    log.warning("could not list user group %s: %s", self.group, e.response.get("error"))
            return self._members


def verified(flag: str, members: Admins) -> Callable[..., BoltResponse | None]:
    """Bolt listener middleware: sets context[flag] to whether the user acting is one of `members`.

    Listener groups that need a role (who may stop, who may decide approvals) get it here, once,
    and hand the verified flag to core's command (as_admin, as_approver), which decides.
    """

    def middleware(context, next: Callable[[], BoltResponse]) -> BoltResponse | None:  # noqa: A002
        context[flag] = bool(context.user_id) and members.is_admin(context.user_id)
        return next()

    return middleware
