"""Build serve's operational endpoints from a wired Expbot: the registry, its collectors and the probes."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bot.container import Expbot
from bot.telemetry.events import ObservingNotifier
from bot.telemetry.probes import DatabaseCheck, Liveness, operations_app
from bot.telemetry.process import Telemetry
from bot.telemetry.store import StoreCollector


@dataclass(frozen=True)
class Operations:
    """What the HTTP routes need: the app for /metrics and the probes, and where Slack ack times go."""

    app: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
    observe_ack: Callable[[float], None]


def telemetry_of(bot: Expbot) -> Telemetry:
    """The process's metrics (made by bootstrap when Slack is on, else here, once)."""
    if bot.telemetry is None:
        bot.telemetry = Telemetry()
    return bot.telemetry


def operations(bot: Expbot) -> Operations:
    """/metrics (process and store metrics), /readyz (the database) and /healthz (the supervisor's passes)."""
    telemetry = telemetry_of(bot)
    idle_states = bot.idle_states
    telemetry.registry.register(StoreCollector(
        bot.session_factory, bot.uow_factory, bot.clock, bot.budgets,
        idle_gpu_hours=lambda: idle_states.total_idle_gpu_hours(),
    ))
    relists = getattr(bot.backend, "relists", None)  # Kubernetes: the watches' counts
    if relists is not None:
        telemetry.count_relists(relists)
    # Delivered events feed the latency histograms (the relay, and so this, runs on the leader).
    bot.notifier = ObservingNotifier(bot.notifier, telemetry.latencies)
    scheduler = bot.supervisor.scheduler
    live = Liveness(telemetry, lambda: scheduler.last_pass_at, bot.clock.now, resync_seconds(bot))
    return Operations(operations_app(telemetry, DatabaseCheck(bot.session_factory), live), telemetry.ack_seconds.observe)


def resync_seconds(bot: Expbot) -> float:
    """How often the supervisor makes a full pass (the watch drives it between passes on Kubernetes)."""
    settings = bot.settings
    return settings.k8s_resync_seconds if settings.backend == "kubernetes" else settings.resync_interval_seconds
