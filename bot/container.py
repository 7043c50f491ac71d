"""The Expbot container: everything a running expbot (serve or one CLI command) is made of.

Its own module, so the Slack layer can name it without importing the wiring (bot.bootstrap), which
imports the Slack layer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.config import Settings
from core.budget import BudgetConfig
from core.bus import MessageBus
from core.cost import Prices
from core.digest_service import DigestService
from core.idle import IdleConfig
from core.ports import ClusterBackend, Clock, Notifier, UnitOfWork
from core.spec import LaunchConfig
from core.supervisor import Supervisor


@dataclass
class Expbot:
    """Everything a running expbot (serve or one CLI command) is made of."""

    settings: Settings
    session_factory: Any  # for adapters that read outside a unit of work (digest, threads)
    uow_factory: Callable[[], UnitOfWork]
    clock: Clock
    launch_config: LaunchConfig
    prices: Prices  # or a PriceBook over it (OpenCost): the same interface
    budgets: BudgetConfig
    idle_config: IdleConfig
    idle_states: Any
    backend: ClusterBackend
    bus: MessageBus
    supervisor: Supervisor
    notifier: Notifier
    slack_client: Any = None  # slack_sdk WebClient when Slack is configured
    elector: Any = None  # Kubernetes: a LeaseElector; only its leader supervises and schedules
    digest: DigestService | None = None  # the daily digest (bootstrap always builds it)
    telemetry: Any = None  # bot.telemetry.process.Telemetry: serve's /metrics (made when first needed)
