"""Who may do what in Slack: admins are configured user ids plus a user group's members."""
from __future__ import annotations

import logging
import threading
import time

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
