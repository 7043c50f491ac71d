"""The TOML file's tables built into expbot's configuration models, once per settings object.

Each builder names the file, the table and the key of any mistake (see bot.config_toml).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config_toml import check_keys, gpu_type_from_table, model_from_table, toml_duration, toml_tables
from core.approvals import budget_name_problem
from core.budget import PROJECT, USER, BudgetConfig
from core.cost import Prices
from core.errors import ExpbotError
from core.signatures import ENTRY_KEYS, Catalog, signature_from_entry
from core.spec import GpuType, LaunchConfig

if TYPE_CHECKING:
    from adapters.k8s.config import K8sConfig
    from bot.config import Settings


@dataclass(frozen=True)
class FileConfig:
    """Everything built from the TOML file (built-in defaults without one)."""

    launch: LaunchConfig
    prices: Prices
    budgets: BudgetConfig
    k8s: "K8sConfig"
    catalog: Catalog


def read_config_file(settings: "Settings") -> FileConfig:
    """Read the file once and build every table now, so that a mistake in any is refused at start."""
    path = settings.config_file
    tables = toml_tables(path) if path is not None else {}
    launch = launch_config(path, tables)
    return FileConfig(
        launch=launch,
        prices=prices(path, tables, launch),
        budgets=budget_config(path, tables, launch),
        k8s=k8s_config(settings, tables, launch),  # the local backend never uses it, but it is checked too
        catalog=failure_catalog(path, tables),
    )


def table_keys() -> dict[str, frozenset[str]]:
    """The keys each table of the TOML file takes (the README documents every one)."""
    from adapters.k8s.config import K8sConfig

    return {
        "launch": frozenset(LaunchConfig.model_fields) - {"gpu_catalog"},  # the catalog is [gpu_types.*]
        "gpu_types.NAME": frozenset(GpuType.model_fields) - {"name"},  # named by its table
        "prices": frozenset(Prices.model_fields) - {"gpu_catalog"},
        # TOML has no durations: the TTL is written in hours, and a bare approval_ttl would be seconds.
        "budgets": frozenset(BudgetConfig.model_fields) - {"approval_ttl"} | {"approval_ttl_hours"},
        # Set from the environment: stop_grace, and the report endpoint with its secret (secrets never
        # come from a file); gpu_pools from [gpu_types.*].
        "kubernetes": frozenset(K8sConfig.model_fields) - {"gpu_pools", "stop_grace", "report_url", "report_secret"},
        "failures.NAME": ENTRY_KEYS,
    }


def _table(tables: dict[str, Any], section: str) -> dict[str, Any]:
    """A copy of one top-level table ({} without it): builders change their copy."""
    return dict(tables.get(section, {}))


def launch_config(path: Path | None, tables: dict[str, Any]) -> LaunchConfig:
    """Launch defaults and limits: built-in, overridden by the file's [launch] and [gpu_types]."""
    fields = _table(tables, "launch")
    check_keys(path, "launch", fields, table_keys()["launch"])
    for key in ("default_max_runtime", "max_runtime_limit", "min_runtime", "default_stall_timeout"):
        if key in fields:
            fields[key] = toml_duration(path, "launch", key, fields[key], "seconds")
    if "gpu_types" in tables:
        assert path is not None
        fields["gpu_catalog"] = {name: gpu_type_from_table(path, name, entry)
                                 for name, entry in tables["gpu_types"].items()}
    config = model_from_table(path, "launch", LaunchConfig, fields)
    problems = config.contradictions()
    if problems:
        raise ExpbotError("\n".join(f"{path}: [launch] {problem}" for problem in problems))
    return config


def prices(path: Path | None, tables: dict[str, Any], launch: LaunchConfig) -> Prices:
    """Prices: GPU prices from the catalog, CPU/memory rates and currency from [prices]."""
    fields = _table(tables, "prices")
    check_keys(path, "prices", fields, table_keys()["prices"])
    return model_from_table(path, "prices", Prices, fields, gpu_catalog=launch.gpu_catalog)


def budget_config(path: Path | None, tables: dict[str, Any], launch: LaunchConfig) -> BudgetConfig:
    """Budgets from [budgets] (none configured: nothing needs approval)."""
    fields = _table(tables, "budgets")
    check_keys(path, "budgets", fields, table_keys()["budgets"])
    if "approval_ttl_hours" in fields:
        hours = fields.pop("approval_ttl_hours")
        fields["approval_ttl"] = toml_duration(path, "budgets", "approval_ttl_hours", hours, "hours")
    config = model_from_table(path, "budgets", BudgetConfig, fields)
    # The same rule as `budget set`: a budget under a name no launch carries would never apply.
    problems = [f"{path}: [budgets] {table}.{name}: {problem}"
                for table, scope, names in (("projects", PROJECT, config.projects), ("users", USER, config.users))
                for name in names if (problem := budget_name_problem(scope, name, launch.projects)) is not None]
    if problems:
        raise ExpbotError("\n".join(problems))
    return config


def k8s_config(settings: "Settings", tables: dict[str, Any], launch: LaunchConfig) -> "K8sConfig":
    """The Kubernetes backend's configuration: [kubernetes], GPU pools from the catalog, environment."""
    from adapters.k8s.config import GpuPool, K8sConfig

    path, fields = settings.config_file, _table(tables, "kubernetes")
    check_keys(path, "kubernetes", fields, table_keys()["kubernetes"])
    for key in ("ttl_after_finished", "image_pull_grace", "gang_timeout", "gang_retry"):
        if key in fields:
            fields[key] = toml_duration(path, "kubernetes", key, fields[key], "seconds", allow_zero=True)
    fields["namespace"] = settings.k8s_namespace or fields.get("namespace") or _pod_namespace() or "default"
    fields["stop_grace"] = timedelta(seconds=settings.stop_grace_seconds)
    fields["gpu_pools"] = {
        name: GpuPool(node_selector=gpu.node_selector, tolerations=gpu.tolerations)
        for name, gpu in launch.gpu_catalog.items()
    }
    if settings.report_url:
        fields["report_url"] = settings.report_url
    if settings.report_secret is not None:
        fields["report_secret"] = settings.report_secret.get_secret_value()
    return model_from_table(path, "kubernetes", K8sConfig, fields)


def failure_catalog(path: Path | None, tables: dict[str, Any]) -> Catalog:
    """Failure signatures: each [failures.NAME] table first, then the shipped defaults."""
    own = []
    for name, entry in tables.get("failures", {}).items():
        if not isinstance(entry, dict):
            raise ExpbotError(f"{path}: [failures] {name}={entry!r}: expected a table, [failures.{name}] "
                              "with pattern = '...' (or exit_code = N) and class = 'hardware'")
        try:
            own.append(signature_from_entry({"label": name, **entry}))
        except ValueError as e:
            raise ExpbotError(f"{path}: [failures.{name}] {e}") from None
    return Catalog(own)


def _pod_namespace() -> str | None:
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip() or None
    except OSError:
        return None
