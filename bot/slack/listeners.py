"""What every Slack listener shares: what it may use, work after the ack, errors as one line."""
from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.container import Expbot
from bot.slack.auth import Admins
from bot.slack.pieces import error_text
from core.errors import ExpbotError

log = logging.getLogger(__name__)

Later = Callable[..., None]


@dataclass(frozen=True)
class Deps:
    """What the listener modules are registered with: the expbot, Slack's client, the work pool, the roles."""

    bot: Expbot
    client: WebClient
    later: Later
    admins: Admins
    approvers: Admins


def user_facing(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run work after the ack; its failures reach the user as one ephemeral line, never a traceback."""

    @functools.wraps(fn)
    def wrapper(respond, **kwargs: Any) -> None:
        try:
            fn(respond=respond, **kwargs)
        except ExpbotError as e:
            respond(text=error_text(str(e)), response_type="ephemeral", replace_original=False)
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("error %s in %s", error_id, fn.__name__, extra={"error_id": error_id})
            respond(text=error_text("Something went wrong on expbot's side.", error_id),
                    response_type="ephemeral", replace_original=False)

    return wrapper


def background_runner(workers: int = 4) -> Later:
    """`later(fn, **kwargs)`: run fn on a small pool of its own, so acks never queue behind slow work."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slack-work")

    def later(fn: Callable[..., Any], **kwargs: Any) -> None:
        def run() -> None:
            try:
                fn(**kwargs)
            except Exception:  # user_facing work reports to the user itself; this is the last net
                log.exception("background Slack work %s failed", getattr(fn, "__name__", fn))

        pool.submit(run)

    return later


def ack_then(later: Later, work: Callable[..., Any]) -> Callable[..., None]:
    """A button listener: ack at once, then run `work` (made user-facing) in the background.

    `work` gets the listener's context too: what its group's middleware verified (as_admin, ...).
    """
    guarded = user_facing(work)

    def listener(ack, respond, body, action, client: WebClient, context) -> None:
        ack()
        later(guarded, respond=respond, body=body, action=action, client=client, context=context)

    return listener


def register_error_handler(app: App) -> None:
    """The one error handler: a traceback goes to the log, the user gets one line with an error id."""

    @app.error
    def on_error(error: Exception, body: dict, logger, respond) -> None:
        error_id = uuid.uuid4().hex[:8]
        logger.error("error %s handling a Slack request", error_id, exc_info=error, extra={"error_id": error_id})
        if respond is not None and isinstance(body, dict) and body.get("response_url"):
            respond(text=error_text("Something went wrong on expbot's side.", error_id),
                    response_type="ephemeral", replace_original=False)
