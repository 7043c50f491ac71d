"""What people do on the page, sent to expbot's Bolt app as Slack sends it: signed, over HTTP.

Slash commands and interactions (block_actions, view_submission) go as form posts, events
(app_home_opened) as JSON, each signed with v0 HMAC-SHA256 of the signing secret. The HTTP answer
is Bolt's ack: a slash command's becomes an ephemeral message, a view_submission's may keep the
modal open with field errors, as Slack does with them.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlencode

from bot.sandbox.config import APP, BOT_USER, CHANNELS, PEOPLE, TEAM
from bot.sandbox.state import Message, SandboxState


class DeliveryError(Exception):
    """expbot did not take a delivery (it answered with an HTTP error, or not at all)."""


class Deliverer:
    """Slack's side of the Events API and interactivity, aimed at serve's /slack/events."""

    def __init__(self, state: SandboxState, base: str, signing_secret: str) -> None:
        self.state, self.base, self.secret = state, base, signing_secret
        self.url = f"{base}/slack/events"

    def slash(self, user: str, channel: str, text: str) -> None:
        """`/experiment TEXT` typed in `channel`; the ack's text shows as an ephemeral message."""
        key = self.state.new_response_url_key(channel, user)
        form = {
            "token": "sandbox", "team_id": TEAM, "team_domain": "sandbox", "channel_id": channel,
            "channel_name": CHANNELS.get(channel, channel), "user_id": user, "user_name": _name(user),
            "command": "/experiment", "text": text, "api_app_id": APP, "is_enterprise_install": "false",
            "response_url": self._response_url(key), "trigger_id": self.state.new_trigger(user),
        }
        self.state.post(channel, user, f"/experiment {text}".strip(), None, ephemeral_to=user)
        ack = self._send(urlencode(form), "application/x-www-form-urlencoded")
        if ack.get("text") or ack.get("blocks"):
            self.state.post(channel, BOT_USER, ack.get("text") or "", ack.get("blocks"), ephemeral_to=user)

    def press(self, user: str, action: dict[str, Any], where: dict[str, Any]) -> None:
        """A button pressed in a message (`where`: channel, ts) or in a view (`where`: view_id)."""
        payload: dict[str, Any] = {
            "type": "block_actions", "user": _user(user), "api_app_id": APP, "token": "sandbox",
            "trigger_id": self.state.new_trigger(user), "team": {"id": TEAM, "domain": "sandbox"},
            "actions": [{**action, "action_ts": f"{time.time():.6f}"}],
        }
        view = self.state.views.get(where.get("view_id") or "")
        if view is not None:
            payload |= {"container": {"type": "view", "view_id": view.id}, "view": _view_payload(view, {})}
        else:
            msg = self._message(where)
            key = self.state.new_response_url_key(msg.channel, user, None if msg.ephemeral_to else msg.ts)
            payload |= {
                "container": {"type": "message", "message_ts": msg.ts, "channel_id": msg.channel,
                              "is_ephemeral": bool(msg.ephemeral_to)},
                "channel": {"id": msg.channel, "name": CHANNELS.get(msg.channel, msg.channel)},
                "message": {"type": "message", "ts": msg.ts, "text": msg.text, "blocks": msg.blocks or [],
                            "user": msg.user},
                "response_url": self._response_url(key),
            }
        self._send(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def submit(self, user: str, view_id: str, values: dict[str, Any]) -> None:
        """The modal's Submit: field errors keep it open; a plain ack closes it."""
        view = self.state.views.get(view_id)
        if view is None or not view.open or view.user != user:
            raise DeliveryError("that form is no longer open")
        payload = {"type": "view_submission", "team": {"id": TEAM}, "user": _user(user), "api_app_id": APP,
                   "token": "sandbox", "trigger_id": self.state.new_trigger(user), "view": _view_payload(view, values)}
        ack = self._send(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
        with self.state.lock:
            if ack.get("response_action") == "errors":
                view.errors = dict(ack.get("errors") or {})
                self.state.changed()
            elif ack.get("response_action") in ("update", "push") and isinstance(ack.get("view"), dict):
                self.state.replace_view(view, ack["view"])
            else:  # a plain ack, or "clear"
                self.state.close(view)

    def home_opened(self, user: str) -> None:
        """The App Home tab opened: Slack's app_home_opened event."""
        event = {"type": "app_home_opened", "user": user, "channel": self.state.dm(user), "tab": "home",
                 "event_ts": f"{time.time():.6f}"}
        home = self.state.home(user)
        if home is not None:
            event["view"] = _view_payload(home, {})
        body = {"token": "sandbox", "team_id": TEAM, "api_app_id": APP, "type": "event_callback",
                "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()), "event": event}
        self._send(json.dumps(body), "application/json")

    def _message(self, where: dict[str, Any]) -> Message:
        with self.state.lock:
            found = next((m for m in self.state.messages if m.channel == where.get("channel")
                          and m.ts == where.get("ts") and not m.deleted), None)
        if found is None:
            raise DeliveryError("that message is gone")
        return found

    def _response_url(self, key: str) -> str:
        return f"{self.base}/sandbox/respond/{key}"

    def _send(self, body: str, content_type: str) -> dict[str, Any]:
        stamp = str(int(time.time()))
        signature = hmac.new(self.secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": f"v0={signature}"}
        request = urllib.request.Request(self.url, data=body.encode(), headers=headers, method="POST")
        try:
            # Slack waits 3 s for an ack; the sandbox is patient (a loaded machine) but not forever.
            with urllib.request.urlopen(request, timeout=15) as answer:
                kind, content = answer.headers.get("Content-Type", ""), answer.read()
        except urllib.error.HTTPError as e:
            raise DeliveryError(f"expbot answered HTTP {e.code}") from e
        except OSError as e:  # refused, reset, timed out
            raise DeliveryError(f"expbot did not answer: {e}") from e
        text = content.decode("utf-8", "replace")
        if "json" not in kind:
            return {"text": text} if text.strip() else {}
        parsed = json.loads(text) if text.strip() else {}
        return parsed if isinstance(parsed, dict) else {}


def _name(user: str) -> str:
    return next((p.name for p in PEOPLE if p.id == user), user)


def _user(user: str) -> dict[str, str]:
    return {"id": user, "username": _name(user), "name": _name(user), "team_id": TEAM}


def _view_payload(view: Any, values: dict[str, Any]) -> dict[str, Any]:
    return {**view.view, "id": view.id, "team_id": TEAM, "hash": view.hash, "state": {"values": values},
            "private_metadata": view.view.get("private_metadata", ""), "callback_id": view.view.get("callback_id", "")}
