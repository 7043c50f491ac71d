"""The sandbox's wiring into `expbot serve`: the settings that point Slack at it, and its routes."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from bot.config import Settings
from bot.container import Expbot
from bot.sandbox.client import publish
from bot.sandbox.config import SandboxSettings, SandboxWiring, is_loopback, wiring_for
from bot.sandbox.delivery import Deliverer
from bot.sandbox.page import SandboxApp, Wsgi
from bot.sandbox.state import SandboxState
from bot.sandbox.store import SandboxStore
from bot.sandbox.webapi import WebApi
from core.errors import ExpbotError

log = logging.getLogger("expbot.sandbox")


@dataclass
class Sandbox:
    """One sandbox Slack for one serve: `settings` to bootstrap with, `mount` for serve's HTTP routes."""

    wiring: SandboxWiring
    state: SandboxState
    store: SandboxStore

    @property
    def settings(self) -> Settings:
        """The user's settings with Slack pointed at the sandbox."""
        return self.wiring.settings

    @property
    def url(self) -> str:
        """Where a browser opens the page."""
        return f"{self.wiring.base}/sandbox"

    def attach(self, bot: Expbot) -> Expbot:
        """Events still go to serve's log too, as without Slack: bootstrap logs every Slack notifier's."""
        return bot

    def mount(self, slack: Wsgi) -> Wsgi:
        """Serve the sandbox under /sandbox, in front of expbot's Slack endpoint."""
        w = self.wiring
        app = SandboxApp(self.state, WebApi(self.state, w.bot_token, w.base),
                         Deliverer(self.state, w.base, w.signing_secret), slack, w.token)
        publish(w)  # `expbot digest` posts here too, as it would to Slack
        self.store.start()  # serve holds the data directory now: no other serve writes it
        log.info("no Slack token configured: try expbot's Slack experience at %s", self.url)
        if not is_loopback(w.settings.http_host) and not w.token:
            log.warning("the Slack sandbox listens on %s but EXPBOT_SANDBOX_TOKEN is not set: "
                        "browsers on other machines are refused", w.settings.http_host)
        return app


def open_sandbox(settings: Settings) -> Sandbox | None:
    """The sandbox for `expbot serve`, or None when a Slack token is configured (or EXPBOT_SANDBOX_ENABLED=false)."""
    try:
        sandbox = SandboxSettings()
    except ValidationError as e:  # one line per mistake, never the values (the token is a secret)
        raise ExpbotError("\n".join(f"EXPBOT_SANDBOX_{str(err['loc'][0]).upper()}: {err['msg']}"
                                     for err in e.errors())) from None
    wiring = wiring_for(settings, sandbox)
    if wiring is None:
        return None
    state = SandboxState()
    store = SandboxStore(state, settings.data_dir)
    store.load()  # the page as the last serve left it: its threads take this serve's replies
    return Sandbox(wiring, state, store)
