"""Start the Slack side of `expbot serve`: HTTP (waitress) or Socket Mode, by configuration."""
from __future__ import annotations

import logging
from collections.abc import Callable

from bot.bootstrap import Expbot
from bot.http_server import HttpServer, routes
from bot.slack.app import create_app

log = logging.getLogger(__name__)


class SlackStopper:
    """Calling it stops the Slack listener; `port` is the HTTP port (None in Socket Mode)."""

    def __init__(self, stop: Callable[[], None], port: int | None) -> None:
        self._stop, self.port = stop, port

    def __call__(self) -> None:
        self._stop()


def start_slack(bot: Expbot) -> SlackStopper:
    """Serve Slack: Socket Mode when an app-level token is set, else HTTP at /slack/events."""
    settings = bot.settings
    if settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        app = create_app(bot, bot.slack_client, socket_mode=True)
        handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
        handler.connect()  # returns at once; the connection lives on its own threads
        log.info("connected to Slack in Socket Mode")
        return SlackStopper(handler.close, None)
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    app = create_app(bot, bot.slack_client)
    server = HttpServer(routes(SlackRequestHandler(app)), settings.http_host, settings.http_port).start()
    return SlackStopper(server.stop, server.port)
