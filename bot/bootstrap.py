"""The one place that builds adapters from settings and wires them to core."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from datetime import timedelta

from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from adapters.clock import SystemClock
from adapters.console_notifier import AlsoLogged, ConsoleNotifier
from adapters.db.engine import make_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWork, make_session_factory
from adapters.local.runner import LocalRunner
from bot.config import Settings
from bot.digest import digest_service
from bot.scheduled import scheduled_handlers
from adapters.db.idle_states import SqlIdleStates
from core import approvals, commands, handlers, idle_job
from core.bus import MessageBus
from core.ports import ClusterBackend, Clock, UnitOfWork
from core.errors import ExpbotError
from core.idle import IdleConfig
from core.node_health import NodeHealthConfig
from core.reconciler import HourlyRates
from core.supervisor import Supervisor
from bot.container import Expbot


def shown_url(url: str) -> str:
    """The database URL as an error or a log line may show it: never its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "(a URL that does not parse)"


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn a database that cannot be opened or upgraded into one line naming EXPBOT_DATABASE_URL."""
    try:
        yield
    # Malformed (a port that is not a number: ValueError), unreachable, corrupt, newer than this
    # expbot (CommandError), or no driver installed (ImportError).
    except (SQLAlchemyError, CommandError, ImportError, ValueError) as e:
        reason = " ".join(str(getattr(e, "orig", None) or e).split())  # drivers explain over several lines
        raise ExpbotError(f"cannot open the database {shown_url(url)} (EXPBOT_DATABASE_URL): {reason}") from e


def _supervisor(settings: Settings, uow_factory: Callable[[], UnitOfWork], backend: ClusterBackend, clock: Clock,
                prices: HourlyRates) -> Supervisor:
    """The supervisor as the settings configure it."""
    return Supervisor(
        uow_factory, backend, clock, backoff=settings.backoff(),
        stop_grace=timedelta(seconds=settings.stop_grace_seconds), prices=prices,
        catalog=settings.failure_catalog(), max_excluded_nodes=settings.max_excluded_nodes,
        node_health=NodeHealthConfig(settings.node_health_experiments,
                                     timedelta(hours=settings.node_health_window_hours)),
        cordon_node=_cordoner(backend),
        xids=_xid_evidence(settings),
    )


def bootstrap(settings: Settings, *, migrate: bool = True) -> Expbot:
    """Build and wire expbot from settings (upgrading the database schema first if asked)."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExpbotError(f"cannot use EXPBOT_DATA_DIR={settings.data_dir}: {e.strerror or e}") from e
    url = settings.resolved_database_url()
    with database_errors(url):
        # One engine for the upgrade and for the rest: both name the setting when the database is sick.
        engine = make_engine(url, setting="EXPBOT_DATABASE_URL" if settings.database_url else "EXPBOT_DATA_DIR")
        if migrate:
            upgrade(engine)
    session_factory = make_session_factory(engine)

    def uow_factory() -> UnitOfWork:
        return SqlUnitOfWork(session_factory)

    clock = SystemClock()
    launch_config = settings.launch_config()
    backend, elector = _cluster(settings, clock, session_factory)
    prices, budgets = settings.prices(), settings.budget_config()
    if settings.prometheus_url and settings.opencost_prices:
        from adapters.opencost import OpenCostPrices, PriceBook

        # Refreshed by serve's scheduler, never here: a CLI command must not wait on Prometheus.
        prices = PriceBook(prices, OpenCostPrices(settings.prometheus_url))
    idle_states, idle_config = SqlIdleStates(session_factory), settings.idle_config()
    supervisor = _supervisor(settings, uow_factory, backend, clock, prices)
    notifier, slack_client, telemetry = (_slack_notifier(settings, uow_factory, session_factory, clock, idle_config)
                                         if settings.slack_enabled else (ConsoleNotifier(), None, None))
    if settings.slack_enabled:
        notifier = AlsoLogged(notifier)  # every decision in serve's log too, as without Slack
    digest = digest_service(settings, session_factory, uow_factory, prices, budgets, idle_states, slack_client)
    bus = MessageBus(
        uow_factory,
        {
            **scheduled_handlers(settings, digest, prices, budgets, clock, slack_client),
            commands.LaunchExperiment: functools.partial(
                handlers.launch, config=launch_config, backend=backend, clock=clock, prices=prices, budgets=budgets,
            ),
            commands.ApproveLaunch: functools.partial(approvals.approve, clock=clock),
            commands.DenyLaunch: functools.partial(approvals.deny, clock=clock),
            commands.ExpireApprovals: functools.partial(approvals.expire, clock=clock, config=budgets),
            commands.SetBudget: functools.partial(approvals.set_budget, clock=clock, projects=launch_config.projects),
            commands.KeepExperiment: functools.partial(idle_job.handle_keep, idle_states=idle_states, clock=clock),
            commands.StopExperiment: functools.partial(
                handlers.stop, backend=backend, clock=clock,
                grace=timedelta(seconds=settings.stop_grace_seconds),
            ),
        },
    )
    return Expbot(settings, session_factory, uow_factory, clock, launch_config, prices, budgets, idle_config, idle_states, backend, bus,
                  supervisor, notifier, slack_client, elector, digest, telemetry=telemetry)


def _cordoner(backend: ClusterBackend) -> Callable[[str], None] | None:
    """The backend's way to cordon a sick node, when its configuration opts in ([kubernetes] cordon_bad_nodes)."""
    config = getattr(backend, "config", None)
    return getattr(backend, "cordon_node", None) if getattr(config, "cordon_bad_nodes", False) else None


def _cluster(settings: Settings, clock: Clock, session_factory: Any) -> tuple[ClusterBackend, Any]:
    """The backend, and on Kubernetes with leader election the Lease elector (one API client for both)."""
    if settings.backend == "local":
        runner = LocalRunner(settings.runs_dir(), settings.resolved_local_gpus(), clock, cgroups=settings.local_cgroups)
        return runner, None
    # Imported here so the embedded default never loads the Kubernetes client.
    from adapters.db.progress import SqlProgressStore
    from adapters.k8s.backend import K8sBackend
    from adapters.k8s.connect import api_client

    api, k8s = api_client(settings.k8s_kubeconfig, settings.k8s_context), settings.k8s_config()
    backend = K8sBackend(api, k8s, clock, progress=SqlProgressStore(session_factory))
    return backend, _elector(settings, api, k8s.namespace) if settings.leader_election else None


def _elector(settings: Settings, api: Any, namespace: str) -> Any:
    import os
    import socket

    from adapters.k8s.leader import LeaseElector

    identity = settings.pod_name or f"{socket.gethostname()}-{os.getpid()}"
    return LeaseElector(api, namespace=namespace,
                        name=settings.lease_name, identity=identity,
                        lease_duration=settings.lease_duration_seconds,
                        renew_deadline=settings.lease_renew_deadline_seconds, retry_period=settings.lease_retry_seconds)


def _slack_notifier(
    settings: Settings, uow_factory: Callable[[], UnitOfWork], session_factory: Any, clock: Clock, idle: IdleConfig
):
    # Imported here so CLI commands without Slack configured never load slack_sdk's machinery.
    from adapters.db.slack_threads import SlackThreads
    from adapters.slack_client import make_web_client
    from bot.slack.notifier import SlackNotifier

    assert settings.slack_bot_token is not None
    from bot.telemetry.process import Telemetry

    # Made here, where the Web API client is: the client reports its calls to it; serve exposes it at /metrics.
    telemetry = Telemetry()
    client = make_web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url,
                             observe=telemetry.slack_call)
    notifier = SlackNotifier(
        client, uow_factory, SlackThreads(session_factory), clock, currency=settings.prices().currency,
        default_channel=settings.slack_default_channel, approvals_channel=settings.slack_approvals_channel,
        ops_channel=settings.slack_ops_channel, keep_options=idle.keep_options,
    )
    return notifier, client, telemetry


def _xid_evidence(settings: Settings) -> Any:
    """DCGM Xid errors for failed attempts: Prometheus when configured, else none (log evidence only)."""
    if not settings.prometheus_url:
        return None
    from adapters.metrics.prometheus import PrometheusGpuMetrics, pod_selector

    selector = pod_selector(label=settings.prometheus_pod_label, namespace=settings.prometheus_namespace)
    # The supervisor asks as attempts fail: a slow Prometheus must delay its decisions only a little.
    return PrometheusGpuMetrics(settings.prometheus_url, selector=selector, timeout=3.0)


def idle_metrics(bot: Expbot) -> Any:
    """The GPU utilisation source: Prometheus (DCGM exporter) when configured, else NVML locally."""
    settings, config = bot.settings, bot.idle_config
    if settings.prometheus_url:
        from adapters.metrics.prometheus import PrometheusGpuMetrics, pod_selector

        selector = pod_selector(label=settings.prometheus_pod_label, namespace=settings.prometheus_namespace)
        return PrometheusGpuMetrics(settings.prometheus_url, step=config.sample_window, selector=selector)
    from adapters.metrics.nvml import NvmlGpuMetrics, launch_gpu_ids

    return NvmlGpuMetrics(launch_gpu_ids(settings.runs_dir()), window=config.sample_window)
