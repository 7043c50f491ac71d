"""Settings from EXPBOT_* environment variables plus an optional TOML file for structured parts."""
from __future__ import annotations

import shutil
import subprocess
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ExpbotError
from core.budget import BudgetConfig
from core.cost import Prices
from core.idle import IdleConfig
from core.policy import Backoff
from core.spec import GpuType, LaunchConfig

if TYPE_CHECKING:
    from adapters.k8s.config import K8sConfig


class Settings(BaseSettings):
    """Everything expbot reads from its environment; secrets only ever come from here."""

    model_config = SettingsConfigDict(env_prefix="EXPBOT_", extra="ignore")

    data_dir: Path = Path.home() / ".expbot"
    database_url: str | None = None  # default: SQLite file in data_dir
    config_file: Path | None = None  # TOML: GPU catalog and prices, projects, launch defaults
    backend: Literal["local", "kubernetes"] = "local"
    local_gpus: int | None = None  # default: what nvidia-smi lists, else 0
    resync_interval_seconds: float = 2.0
    backoff_base_seconds: float = 10.0
    backoff_cap_seconds: float = 600.0
    stop_grace_seconds: float = 30.0
    relay_interval_seconds: float = 1.0
    log_level: str = "INFO"

    # Kubernetes backend (EXPBOT_BACKEND=kubernetes); Job shape details in the TOML [kubernetes] table
    k8s_namespace: str | None = None  # default: the pod's own namespace in a cluster, else "default"
    k8s_kubeconfig: Path | None = None  # default: in-cluster credentials, else ~/.kube/config
    k8s_context: str | None = None
    k8s_resync_seconds: float = 30.0  # the watch drives supervision; a full pass this often besides
    report_url: str | None = None  # expbot's /report endpoint as training pods reach it
    report_secret: SecretStr | None = None  # keys the per-attempt report tokens
    leader_election: bool = True  # Kubernetes: only the Lease holder supervises and schedules
    lease_name: str = "expbot-leader"
    lease_duration_seconds: float = 15.0  # a dead leader is replaced within about this long
    lease_renew_deadline_seconds: float = 10.0  # a leader that cannot renew this long stops leading
    lease_retry_seconds: float = 2.0
    pod_name: str | None = None  # this replica's identity in the Lease (downward API)

    # Slack (all optional: without a bot token expbot runs without Slack)
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None  # HTTP mode: verifies every request
    slack_app_token: SecretStr | None = None  # xapp-...: Socket Mode instead of HTTP
    slack_api_url: str | None = None  # Web API base URL; tests point it at a local server
    slack_default_channel: str | None = None  # for CLI launches, and when a channel refuses the bot
    slack_admins: str = ""  # comma-separated Slack user ids who may stop anyone's experiment
    slack_admin_group: str | None = None  # a user group id (S...) whose members are admins too
    slack_approvers: str = ""  # comma-separated user ids who may approve over-budget launches
    slack_approver_group: str | None = None  # a user group whose members are approvers too
    slack_approvals_channel: str | None = None  # where approval requests go (default: the default channel)
    http_host: str = "0.0.0.0"
    http_port: int = 3000

    # Daily digest: posted at digest_time (in the budgets' time zone) to the digest channel
    slack_digest_channel: str | None = None
    digest_time: str = "09:00"
    digest_catch_up_all: bool = False  # after downtime: every missed day, or only the latest

    # Idle GPUs: utilisation from Prometheus (DCGM exporter) when a URL is set, else NVML locally
    prometheus_url: str | None = None
    prometheus_pod_label: str = "exported_pod"
    prometheus_namespace: str | None = None
    opencost_prices: bool = True  # GPU/CPU/memory prices from OpenCost's node metrics when present
    opencost_refresh_seconds: float = 600
    idle_sample_window_seconds: float = 300
    idle_threshold_percent: float = 1.0
    idle_for_minutes: float = 30
    idle_warm_up_minutes: float = 15
    idle_grace_minutes: float = 30
    idle_auto_stop: bool = True
    idle_keep_hours: str = "2,24"
    idle_check_seconds: float = 60

    def idle_config(self) -> IdleConfig:
        """The idle policy's thresholds."""
        try:
            keep = tuple(timedelta(hours=float(h)) for h in self.idle_keep_hours.split(",") if h.strip())
            return IdleConfig(
                sample_window=timedelta(seconds=self.idle_sample_window_seconds),
                idle_threshold_percent=self.idle_threshold_percent,
                idle_for=timedelta(minutes=self.idle_for_minutes),
                warm_up=timedelta(minutes=self.idle_warm_up_minutes),
                grace=timedelta(minutes=self.idle_grace_minutes), auto_stop=self.idle_auto_stop,
                keep_options=keep, check_every=timedelta(seconds=self.idle_check_seconds),
            )
        except ValueError as e:
            raise ExpbotError(f"invalid EXPBOT_IDLE_* setting: {e}") from e

    @property
    def slack_enabled(self) -> bool:
        """Slack is on when a bot token is configured."""
        return self.slack_bot_token is not None

    def slack_approver_ids(self) -> frozenset[str]:
        """The configured approver user ids."""
        return frozenset(part.strip() for part in self.slack_approvers.split(",") if part.strip())

    def slack_admin_ids(self) -> frozenset[str]:
        """The configured admin user ids."""
        return frozenset(part.strip() for part in self.slack_admins.split(",") if part.strip())

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'expbot.db').resolve()}"

    def runs_dir(self) -> Path:
        """Where the local runner keeps attempts, logs and checkpoints."""
        return (self.data_dir / "runs").resolve()

    def resolved_local_gpus(self) -> int:
        """The configured local GPU count, else the number nvidia-smi lists."""
        return self.local_gpus if self.local_gpus is not None else detect_gpus()

    def backoff(self) -> Backoff:
        """Restart backoff from the settings."""
        return Backoff(base=timedelta(seconds=self.backoff_base_seconds), cap=timedelta(seconds=self.backoff_cap_seconds))

    def prices(self) -> Prices:
        """Prices: GPU prices from the catalog, CPU/memory rates and currency from the TOML [prices]."""
        extra = _read_toml(self.config_file).get("prices", {}) if self.config_file else {}
        try:
            return Prices(gpu_catalog=self.launch_config().gpu_catalog, **extra)
        except (ValidationError, TypeError) as e:
            raise ExpbotError(f"{self.config_file}: invalid [prices]: {e}") from e

    def budget_config(self) -> BudgetConfig:
        """Budgets from the TOML [budgets] section (none configured: nothing needs approval)."""
        fields = dict(_read_toml(self.config_file).get("budgets", {})) if self.config_file else {}
        if "approval_ttl_hours" in fields:
            fields["approval_ttl"] = timedelta(hours=fields.pop("approval_ttl_hours"))
        try:
            return BudgetConfig(**fields)
        except (ValidationError, TypeError) as e:
            raise ExpbotError(f"{self.config_file}: invalid [budgets]: {e}") from e

    def k8s_config(self) -> "K8sConfig":
        """The Kubernetes backend's configuration: TOML [kubernetes], GPU pools from the catalog, env."""
        from adapters.k8s.config import GpuPool, K8sConfig

        fields: dict[str, Any] = dict(_read_toml(self.config_file).get("kubernetes", {})) if self.config_file else {}
        for key in ("ttl_after_finished", "image_pull_grace"):
            if isinstance(fields.get(key), (int, float)):
                fields[key] = timedelta(seconds=fields[key])
        fields["namespace"] = self.k8s_namespace or fields.get("namespace") or _pod_namespace() or "default"
        fields["stop_grace"] = timedelta(seconds=self.stop_grace_seconds)
        fields["gpu_pools"] = {
            name: GpuPool(node_selector=gpu.node_selector, tolerations=gpu.tolerations)
            for name, gpu in self.launch_config().gpu_catalog.items()
        }
        if self.report_url:
            fields["report_url"] = self.report_url
        if self.report_secret is not None:
            fields["report_secret"] = self.report_secret.get_secret_value()
        try:
            return K8sConfig(**fields)
        except (ValidationError, TypeError) as e:
            raise ExpbotError(f"{self.config_file}: invalid [kubernetes]: {e}") from e

    def launch_config(self) -> LaunchConfig:
        """Launch defaults and limits: built-in, overridden by the TOML file's [launch] and [gpu_types]."""
        if self.config_file is None:
            return LaunchConfig()
        data = _read_toml(self.config_file)
        fields: dict[str, Any] = dict(data.get("launch", {}))
        if "gpu_types" in data:
            fields["gpu_catalog"] = {
                name: GpuType(name=name, **entry) for name, entry in data["gpu_types"].items()
            }
        for key in ("default_max_runtime", "max_runtime_limit", "default_stall_timeout"):
            if key in fields and isinstance(fields[key], (int, float)):
                fields[key] = timedelta(seconds=fields[key])
        try:
            return LaunchConfig(**fields)
        except (ValidationError, TypeError) as e:
            raise ExpbotError(f"{self.config_file}: invalid configuration: {e}") from e


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise ExpbotError(f"configuration file {path} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise ExpbotError(f"configuration file {path} is not valid TOML: {e}") from e


def _pod_namespace() -> str | None:
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip() or None
    except OSError:
        return None


def detect_gpus() -> int:
    """How many NVIDIA GPUs this machine has (0 without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
