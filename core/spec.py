"""What a researcher asked for: the experiment spec, and the configuration it is checked against."""
from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

# Kubernetes object names get suffixes (attempt number, short id), so leave room under 63.
MAX_NAME_LENGTH = 40
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_ENV_PREFIX = "EXPBOT_"


class GpuType(BaseModel):
    """One entry of the GPU catalog."""

    model_config = ConfigDict(frozen=True)
    name: str
    price_per_hour: float = 0.0
    node_selector: dict[str, str] = Field(default_factory=dict)  # Kubernetes: nodes of this type
    tolerations: tuple[dict[str, str], ...] = ()  # Kubernetes: taints of this type's node pool


def default_gpu_catalog() -> dict[str, GpuType]:
    """A catalog with on-demand list prices (USD per GPU-hour) of common cloud GPUs."""
    prices = {"h100": 4.0, "a100": 2.5, "l40s": 1.5, "a10g": 1.0, "l4": 0.8, "t4": 0.35}
    return {name: GpuType(name=name, price_per_hour=price) for name, price in prices.items()}


class LaunchConfig(BaseModel):
    """Defaults and limits a launch is checked against (from expbot's configuration)."""

    model_config = ConfigDict(frozen=True)
    gpu_catalog: dict[str, GpuType] = Field(default_factory=default_gpu_catalog)
    default_gpu_type: str | None = None  # None: the first catalog entry
    projects: tuple[str, ...] = ()  # empty: any project name is accepted
    default_project: str = "default"
    default_image: str = "python:3.11-slim"
    default_gpus: int = 0
    max_gpus: int = 64
    default_max_runtime: timedelta = timedelta(hours=24)
    max_runtime_limit: timedelta = timedelta(days=7)
    default_max_restarts: int = 3
    default_max_preemptions: int = 10
    default_checkpoint_glob: str = "*"
    default_stall_timeout: timedelta | None = None
    give_up_patterns: tuple[str, ...] = ("CUDA out of memory",)
    max_sweep_size: int = 32

    def resolved_default_gpu_type(self) -> str | None:
        """The GPU type used when a launch names none."""
        if self.default_gpu_type:
            return self.default_gpu_type
        return next(iter(self.gpu_catalog), None)


class ExperimentSpec(BaseModel):
    """One experiment, fully resolved: every default filled in and every value checked."""

    model_config = ConfigDict(frozen=True)
    name: str
    command: tuple[str, ...]
    image: str
    gpus: int = 0
    gpu_type: str | None = None
    cpu: str | None = None
    memory: str | None = None
    max_runtime: timedelta = timedelta(hours=24)
    max_restarts: int = 3
    max_preemptions: int = 10
    retry_on_exit_codes: frozenset[int] = frozenset()
    env: dict[str, str] = Field(default_factory=dict)
    project: str = "default"
    checkpoint_glob: str = "*"
    stall_timeout: timedelta | None = None
    give_up_patterns: tuple[str, ...] = ()
    group: str | None = None  # sweep group name; None for a single experiment
    sweep_values: dict[str, str] = Field(default_factory=dict)


class LaunchRequest(BaseModel):
    """The parsed form of one `launch` line: one spec, or several for a sweep."""

    model_config = ConfigDict(frozen=True)
    group: str | None
    specs: tuple[ExperimentSpec, ...]
