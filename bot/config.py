"""Settings from EXPBOT_* environment variables plus an optional TOML file for structured parts."""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config_file import FileConfig, read_config_file
from bot.config_toml import expected_words
from core.budget import BudgetConfig
from core.cost import Prices
from core.errors import ExpbotError
from core.idle import IdleConfig
from core.policy import Backoff
from core.signatures import Catalog
from core.spec import LaunchConfig

if TYPE_CHECKING:
    from adapters.k8s.config import K8sConfig

# How often a loop runs: 0 or less would make it spin at 100% CPU, so intervals must be positive.
Interval = Annotated[float, Field(gt=0)]
# A grace period or delay: 0 means none, a negative one means nothing.
Delay = Annotated[float, Field(ge=0)]


class Settings(BaseSettings):
    """Everything expbot reads from its environment; secrets only ever come from here."""

    # allow_inf_nan: 'inf' and 'nan' parse as floats, and no interval, price or percentage means them.
    model_config = SettingsConfigDict(env_prefix="EXPBOT_", extra="ignore", allow_inf_nan=False)

    data_dir: Path = Path.home() / ".expbot"
    database_url: str | None = None  # default: SQLite file in data_dir
    config_file: Path | None = None  # TOML: GPU catalog and prices, projects, launch defaults
    backend: Literal["local", "kubernetes"] = "local"
    local_gpus: Annotated[int, Field(ge=0)] | None = None  # default: what nvidia-smi lists, else 0
    local_cgroups: bool = True  # a cgroup v2 per local attempt where allowed (else subreaper + token)
    resync_interval_seconds: Interval = 2.0
    backoff_base_seconds: Delay = 10.0
    backoff_cap_seconds: Delay = 600.0
    stop_grace_seconds: Delay = 30.0
    relay_interval_seconds: Interval = 1.0
    serve_heartbeat_seconds: Interval = 5.0  # serve stamps the database this often (the CLI: is one running?)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for log collectors

    # Kubernetes backend (EXPBOT_BACKEND=kubernetes); Job shape details in the TOML [kubernetes] table
    k8s_namespace: str | None = None  # default: the pod's own namespace in a cluster, else "default"
    k8s_kubeconfig: Path | None = None  # default: in-cluster credentials, else ~/.kube/config
    k8s_context: str | None = None
    k8s_resync_seconds: Interval = 30.0  # the watch drives supervision; a full pass this often besides
    report_url: str | None = None  # expbot's /report endpoint as training pods reach it
    report_secret: SecretStr | None = None  # keys the per-attempt report tokens
    leader_election: bool = True  # Kubernetes: only the Lease holder supervises and schedules
    lease_name: str = "expbot-leader"
    lease_duration_seconds: Interval = 15.0  # a dead leader is replaced within about this long
    lease_renew_deadline_seconds: Interval = 10.0  # a leader that cannot renew this long stops leading
    lease_retry_seconds: Interval = 2.0
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
    slack_ops_channel: str | None = None  # sick-node reports (default: the default channel)
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=3000, ge=0, le=65535)  # 0: any free port (the tests use it)

    # Daily digest: posted at digest_time (in the budgets' time zone) to the digest channel
    slack_digest_channel: str | None = None
    digest_time: str = "09:00"
    digest_catch_up_all: bool = False  # after downtime: every missed day, or only the latest

    # Idle GPUs: utilisation from Prometheus (DCGM exporter) when a URL is set, else NVML locally
    prometheus_url: str | None = None
    prometheus_pod_label: str = "exported_pod"
    prometheus_namespace: str | None = None
    opencost_prices: bool = True  # GPU/CPU/memory prices from OpenCost's node metrics when present
    opencost_refresh_seconds: Interval = 600
    idle_sample_window_seconds: Interval = 300
    idle_threshold_percent: float = Field(default=1.0, ge=0, le=100)
    idle_for_minutes: Interval = 30
    idle_warm_up_minutes: Delay = 15
    idle_grace_minutes: Delay = 30
    idle_auto_stop: bool = True
    idle_keep_hours: str = "2,24"
    idle_check_seconds: Interval = 60
    hang_timeout_minutes: Delay = 10  # GPUs busy then idle this long with no progress: stuck (0: off)

    # Failures: restarts avoid nodes with infrastructure failures; a node that hurt several experiments is reported
    max_excluded_nodes: Annotated[int, Field(ge=0)] = 3  # past this many bad nodes, stop excluding
    node_health_experiments: Annotated[int, Field(ge=0)] = 3  # 0: never report a node
    node_health_window_hours: Interval = 24

    _file: FileConfig | None = PrivateAttr(default=None)  # the TOML file, read once (see _config)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()  # logging.basicConfig wants the upper-case name
        if level not in logging.getLevelNamesMapping():
            raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("digest_time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        # The digest job parses it with time.fromisoformat, which needs two-digit hours: normalise.
        match = re.fullmatch(r"(\d{1,2}):(\d\d)", value.strip())
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError("expected a time of day as HH:MM, e.g. 09:00")
        return f"{int(match[1]):02d}:{match[2]}"

    @field_validator("idle_keep_hours")
    @classmethod
    def _keep_hours(cls, value: str) -> str:
        for part in filter(str.strip, value.split(",")):
            if not re.fullmatch(r"\s*\d{1,6}(\.\d+)?\s*", part) or float(part) == 0:
                raise ValueError("expected comma-separated hours greater than 0, e.g. 2,24")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = []
        if self.backoff_cap_seconds < self.backoff_base_seconds:
            problems.append(f"{_env_name('backoff_cap_seconds')}={self.backoff_cap_seconds:g} is less than "
                            f"{_env_name('backoff_base_seconds')}={self.backoff_base_seconds:g}")
        # The elector needs these in order; checked here so a mistake is refused before it starts.
        timings = ("lease_retry_seconds", "lease_renew_deadline_seconds", "lease_duration_seconds")
        if not self.lease_retry_seconds < self.lease_renew_deadline_seconds < self.lease_duration_seconds:
            given = ", ".join(f"{_env_name(f)}={getattr(self, f):g}" for f in timings)
            problems.append(f"{given}: expected retry < renew deadline < duration")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def check_config_file(self) -> None:
        """Read the TOML file and build every table of it now, so a mistake in it is refused at start."""
        self._file = read_config_file(self)

    def _config(self) -> FileConfig:
        """What the TOML file holds, read once: by load_settings, else at first use."""
        if self._file is None:
            self._file = read_config_file(self)
        return self._file

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
                hang_timeout=timedelta(minutes=self.hang_timeout_minutes),
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
        return self._config().prices

    def budget_config(self) -> BudgetConfig:
        """Budgets from the TOML [budgets] section (none configured: nothing needs approval)."""
        return self._config().budgets

    def k8s_config(self) -> "K8sConfig":
        """The Kubernetes backend's configuration: TOML [kubernetes], GPU pools from the catalog, env."""
        return self._config().k8s

    def launch_config(self) -> LaunchConfig:
        """Launch defaults and limits: built-in, overridden by the TOML file's [launch] and [gpu_types]."""
        return self._config().launch

    def failure_catalog(self) -> Catalog:
        """Failure signatures: the TOML file's [failures.NAME] tables first, then the shipped defaults."""
        return self._config().catalog


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (overrides win), TOML file included; any mistake is an ExpbotError."""
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        # from None: the chained error would carry the inputs, secrets among them, into logs.
        raise ExpbotError("\n".join(_env_problem(error) for error in e.errors())) from None
    settings.check_config_file()
    return settings


# --- turning pydantic's errors into one line per mistake ----------------------------------------
# Values of these are never repeated back: tokens, secrets, and database URLs with their passwords.
_SECRET_FIELDS = frozenset(
    {name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)} | {"database_url"}
)
def _env_name(field: str) -> str:
    """The environment variable a Settings field is read from."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias or info.alias if info else None
    if isinstance(alias, str):  # pydantic-settings reads an alias as is, without the prefix
        return alias.upper()
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def _env_problem(error: Any) -> str:
    """One line for one bad setting: 'EXPBOT_LOCAL_GPUS='abc': expected a whole number'."""
    if not error["loc"]:  # a check across settings: its message names them itself
        return expected_words(error)
    field = str(error["loc"][0])
    value = "(hidden)" if field in _SECRET_FIELDS else repr(error["input"])
    return f"{_env_name(field)}={value}: {expected_words(error)}"


def detect_gpus() -> int:
    """How many NVIDIA GPUs this machine has (0 without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
