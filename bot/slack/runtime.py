"""Start the Slack side of `expbot serve`: HTTP (waitress) or Socket Mode, by configuration."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.container import Expbot
from bot.http_server import HttpServer, Stopper, WsgiApp, routes
from bot.slack.app import create_app

log = logging.getLogger(__name__)


def start_slack(bot: Expbot, report: WsgiApp | None = None, ops: Any = None,
                mount: Callable[[WsgiApp], WsgiApp] | None = None) -> Stopper:
    """Serve Slack: Socket Mode when an app-level token is set, else HTTP at /slack/events (+ /report)."""
    settings = bot.settings
    if settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        app = create_app(bot, bot.slack_client, socket_mode=True)
        handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
        if report is None and ops is None:
            handler.connect()  # returns at once; the connection lives on its own threads
            log.info("connected to Slack in Socket Mode")
            return Stopper(handler.close, None)
        # Progress reports, /metrics and the probes still need HTTP: a server for them alone. Bound before
        # connecting, so a taken port leaves no Socket Mode connection behind.
        reports = HttpServer(routes(None, report, ops), settings.http_host, settings.http_port)
        handler.connect()
        log.info("connected to Slack in Socket Mode")
        reports.start()
        return Stopper(lambda: (handler.close(), reports.stop()), reports.port)
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    app = create_app(bot, bot.slack_client)
    slack: WsgiApp = SlackRequestHandler(app)
    if mount is not None:  # something in front of the Slack endpoint (the sandbox page)
        slack = mount(slack)
    server = HttpServer(routes(slack, report, ops), settings.http_host, settings.http_port).start()
    return Stopper(server.stop, server.port)
