"""The sandbox's own settings (EXPBOT_SANDBOX_*), its people and channels, and when it is on."""
from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config import Settings
from core.errors import ExpbotError

TEAM = "T0SANDBOX"
APP = "A0EXPBOT"
BOT_USER = "U0EXPBOT"


@dataclass(frozen=True)
class Person:
    """Someone the page can act as: the user switcher lists them."""

    id: str
    name: str
    role: str


PEOPLE = (
    Person("U0OWNER", "ana", "owner"),
    Person("U0APPROVER", "priya", "approver"),
    Person("U0ADMIN", "sam", "admin"),
    Person("U0OTHER", "lee", "someone else"),
)
LAUNCH_CHANNEL, APPROVALS_CHANNEL, DIGEST_CHANNEL = "C0LAUNCH", "C0APPROVALS", "C0DIGEST"
CHANNELS = {LAUNCH_CHANNEL: "ml-runs", APPROVALS_CHANNEL: "approvals", DIGEST_CHANNEL: "digest"}


class SandboxSettings(BaseSettings):
    """EXPBOT_SANDBOX_ENABLED, EXPBOT_SANDBOX_HOST (loopback), EXPBOT_SANDBOX_TOKEN."""

    model_config = SettingsConfigDict(env_prefix="EXPBOT_SANDBOX_", extra="ignore")

    # Default: on for the local runner. On Kubernetes a pod's loopback page would help nobody, and
    # listening on loopback only would fail the kubelet's probes; EXPBOT_SANDBOX_ENABLED=true forces it.
    enabled: bool | None = None
    host: str = "127.0.0.1"  # where serve listens while the sandbox is on
    token: SecretStr | None = None  # non-local browsers must bring it (?token=...) when host is not loopback


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) means this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_host(host: str) -> str:
    """An address serve can reach itself on when listening on `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def free_port(host: str) -> int:
    """A port free on `host` now (serve's port 0: the sandbox must know its URL before serve listens)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SandboxWiring:
    """What serve needs to run expbot's real Slack app against the sandbox."""

    settings: Settings  # the user's settings, plus a made-up bot token and the sandbox as Slack
    bot_token: str
    signing_secret: str
    base: str  # http://host:port
    token: str | None  # what a non-local browser must present


def wiring_for(settings: Settings, sandbox: SandboxSettings) -> SandboxWiring | None:
    """Slack settings pointing at the sandbox, or None: a real Slack token is configured, or it is off."""
    if settings.slack_bot_token is not None or settings.slack_app_token is not None:
        return None
    if not (sandbox.enabled if sandbox.enabled is not None else settings.backend == "local"):
        return None
    if not sandbox.host.strip():
        raise ExpbotError("EXPBOT_SANDBOX_HOST is empty: expected an address, e.g. 127.0.0.1")
    port = settings.http_port or free_port(sandbox.host)
    base = f"http://{local_host(sandbox.host)}:{port}"
    # Made up per process: nothing outside this serve can sign requests to its Slack endpoint.
    bot_token, secret = f"xoxb-sandbox-{secrets.token_hex(12)}", secrets.token_hex(16)
    approvers = ",".join(filter(None, [settings.slack_approvers, "U0APPROVER"]))
    admins = ",".join(filter(None, [settings.slack_admins, "U0ADMIN"]))
    wired = settings.model_copy(update={
        "slack_bot_token": SecretStr(bot_token), "slack_signing_secret": SecretStr(secret),
        "slack_api_url": f"{base}/sandbox/api/", "http_host": sandbox.host, "http_port": port,
        "slack_default_channel": settings.slack_default_channel or LAUNCH_CHANNEL,
        "slack_approvals_channel": settings.slack_approvals_channel or APPROVALS_CHANNEL,
        "slack_digest_channel": settings.slack_digest_channel or DIGEST_CHANNEL,
        "slack_approvers": approvers, "slack_admins": admins,
    })
    token = sandbox.token.get_secret_value() if sandbox.token else None
    return SandboxWiring(wired, bot_token, secret, base, token)
